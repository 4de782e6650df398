// Copies the browser libraries installed by `npm ci` into static/vendor/, where
// Django's staticfiles (and collectstatic) serve them: pages never load a CDN.
// noVNC ships ES modules (core/ imports ../vendor/pako): both trees are copied as is.
import { copyFileSync, cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const files = [
  ["node_modules/uplot/dist/uPlot.iife.min.js", "static/vendor/uplot/uPlot.iife.min.js"],
  ["node_modules/uplot/dist/uPlot.min.css", "static/vendor/uplot/uPlot.min.css"],
  ["node_modules/uplot/LICENSE", "static/vendor/uplot/LICENSE"],
  ["node_modules/@novnc/novnc/LICENSE.txt", "static/vendor/novnc/LICENSE.txt"],
];
const trees = [
  ["node_modules/@novnc/novnc/core", "static/vendor/novnc/core"],
  ["node_modules/@novnc/novnc/vendor", "static/vendor/novnc/vendor"],
];
for (const [source, target] of files) {
  mkdirSync(dirname(join(root, target)), { recursive: true });
  copyFileSync(join(root, source), join(root, target));
}
for (const [source, target] of trees) {
  rmSync(join(root, target), { recursive: true, force: true });
  cpSync(join(root, source), join(root, target), { recursive: true });
}
console.log(`vendor_static: copied ${files.length} files and ${trees.length} trees into static/vendor/`);
