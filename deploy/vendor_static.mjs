// Copies the browser libraries installed by `npm ci` into static/vendor/, where
// Django's staticfiles (and collectstatic) serve them: pages never load a CDN.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const files = [
  ["node_modules/uplot/dist/uPlot.iife.min.js", "static/vendor/uplot/uPlot.iife.min.js"],
  ["node_modules/uplot/dist/uPlot.min.css", "static/vendor/uplot/uPlot.min.css"],
  ["node_modules/uplot/LICENSE", "static/vendor/uplot/LICENSE"],
];
for (const [source, target] of files) {
  mkdirSync(dirname(join(root, target)), { recursive: true });
  copyFileSync(join(root, source), join(root, target));
}
console.log(`vendor_static: copied ${files.length} files into static/vendor/`);
