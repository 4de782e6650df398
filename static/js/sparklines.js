// VM list sparklines: one JSON request for the whole page (not one per VM), drawn
// as inline SVG, refreshed every sampling interval. No external libraries.
(function () {
  "use strict";
  const root = document.querySelector("[data-sparklines-url]");
  if (!root) return;
  const url = root.dataset.sparklinesUrl;
  const SVG = "http://www.w3.org/2000/svg";
  const W = 90, H = 22;

  function points(times, values, since, span) {
    const out = [];
    for (let i = 0; i < times.length; i++) {
      if (values[i] === null) continue;
      const x = ((times[i] - since) / span) * W;
      const y = H - 1 - (Math.min(100, Math.max(0, values[i])) / 100) * (H - 2);
      out.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    return out.join(" ");
  }

  function last(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
    return null;
  }

  function pct(value) {
    return value === null ? "—" : value.toFixed(0) + "%";
  }

  function draw(cell, line, since, span) {
    let svg = cell.querySelector("svg");
    if (!svg) {
      svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("width", W);
      svg.setAttribute("height", H);
      svg.setAttribute("viewBox", "0 0 " + W + " " + H);
      for (const cls of ["cpu", "mem"]) {
        const poly = document.createElementNS(SVG, "polyline");
        poly.setAttribute("class", cls);
        svg.appendChild(poly);
      }
      cell.appendChild(svg);
      const label = document.createElement("span");
      label.className = "sparklabel";
      cell.appendChild(label);
    }
    svg.querySelector(".cpu").setAttribute("points", points(line.t, line.cpu, since, span));
    svg.querySelector(".mem").setAttribute("points", points(line.t, line.mem, since, span));
    const text = "CPU " + pct(last(line.cpu)) + " · RAM " + pct(last(line.mem));
    cell.querySelector(".sparklabel").textContent = text;
    cell.title = text;
  }

  function refresh() {
    if (document.hidden) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((data) => {
        const now = Date.now() / 1000;
        const span = Math.max(now - data.since, 1);
        for (const cell of root.querySelectorAll("td.spark[data-uuid]")) {
          const line = data.vms[cell.dataset.uuid];
          if (line) draw(cell, line, data.since, span);
        }
        window.setTimeout(refresh, Math.max(data.interval, 2) * 1000);
      })
      .catch(() => window.setTimeout(refresh, 30000));
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  refresh();
})();
