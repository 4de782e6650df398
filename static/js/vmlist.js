// Keeps the VM list current without reloading: polls a small JSON version of the
// inventory and, when it changed, fetches the page and swaps the VM groups in place.
// Fires "kvmmgr:vmlist-updated" on document so other scripts can re-bind. No libraries.
(function () {
  "use strict";
  const root = document.getElementById("vm-groups");
  if (!root) return;
  const url = root.dataset.stateUrl;
  const INTERVAL_MS = 2000;
  let version = root.dataset.version;
  let busy = false;
  // A click is a press and a release on the same element: redrawing the rows in
  // between would swallow it, so no redraw happens while a pointer is pressed.
  let pressed = false;
  root.addEventListener("pointerdown", () => { pressed = true; });
  for (const type of ["pointerup", "pointercancel", "blur"]) {
    window.addEventListener(type, () => { pressed = false; });
  }

  async function swap() {
    const response = await fetch(window.location.pathname, { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("vm-groups");
    if (!fresh || pressed) return;  // the next poll tries again
    root.innerHTML = fresh.innerHTML;
    version = fresh.dataset.version;
    root.dataset.version = version;
    document.dispatchEvent(new CustomEvent("kvmmgr:vmlist-updated"));
  }

  async function poll() {
    // Never redraw under a pointer that is about to click, nor while a tab is hidden.
    if (busy || pressed || document.hidden || root.matches(":focus-within")) return;
    busy = true;
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const data = await response.json();
        if (data.version !== version) await swap();
      }
    } catch (err) {
      // The next poll retries; a server restart must not break the page.
    } finally {
      busy = false;
    }
  }

  window.setInterval(poll, INTERVAL_MS);
})();
