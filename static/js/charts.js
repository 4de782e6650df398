// VM and node charts: uPlot (vendored into static/vendor/ by the build, no CDN),
// fed by the page's JSON endpoint, refreshed live. The range buttons switch
// between raw samples (1 h), minute rollups (24 h) and hour rollups (7 d, 30 d).
(function () {
  "use strict";
  const root = document.getElementById("charts");
  if (!root || typeof uPlot === "undefined") return;
  const url = root.dataset.seriesUrl;
  const kind = root.dataset.kind;
  const MIB = 1024 * 1024;

  const pct = (u, vals) => vals.map((v) => (v === null ? "" : v.toFixed(0) + "%"));
  const bytes = (u, vals) =>
    vals.map((v) => {
      if (v === null) return "";
      if (v >= MIB) return (v / MIB).toFixed(1) + " MiB/s";
      if (v >= 1024) return (v / 1024).toFixed(0) + " KiB/s";
      return v.toFixed(0) + " B/s";
    });
  const mib = (u, vals) => vals.map((v) => (v === null ? "" : v.toFixed(0) + " MiB"));
  const plain = (u, vals) => vals.map((v) => (v === null ? "" : String(+v.toFixed(1))));

  const VM_CHARTS = [
    { id: "cpu", title: "CPU (% of all vCPUs)", fmt: pct, max: 100, series: [["cpu_pct", "CPU %", "#1f6feb"]] },
    { id: "mem", title: "Memory used", fmt: mib, series: [["mem_used_mib", "used MiB", "#15803d"]] },
    { id: "disk", title: "Disk", fmt: bytes, series: [["disk_rd_bps", "read", "#7c3aed"], ["disk_wr_bps", "write", "#b45309"]] },
    { id: "iops", title: "Disk requests/s", fmt: plain, series: [["disk_rd_iops", "read IOPS", "#7c3aed"], ["disk_wr_iops", "write IOPS", "#b45309"]] },
    { id: "net", title: "Network", fmt: bytes, series: [["net_rx_bps", "rx", "#0e7490"], ["net_tx_bps", "tx", "#be185d"]] },
  ];
  const NODE_CHARTS = [
    { id: "cpu", title: "CPU (% of the host)", fmt: pct, max: 100, series: [["cpu_pct", "CPU %", "#1f6feb"]] },
    { id: "mem", title: "Memory", fmt: mib, series: [["mem_used_mib", "used MiB", "#15803d"], ["mem_total_mib", "total MiB", "#6b7280"]] },
    { id: "vms", title: "Running VMs", fmt: plain, series: [["running_vms", "running", "#b45309"]] },
  ];
  const charts = kind === "node" ? NODE_CHARTS : VM_CHARTS;
  let range = root.dataset.range || "1h";
  let timer = null;
  const plots = {};

  function build(chart, data, width) {
    const rollup = data.resolution >= 60;
    const series = [{}];
    const columns = [data.t];
    for (const [key, label, color] of chart.series) {
      series.push({ label: label, stroke: color, width: 1.5, spanGaps: false, value: (u, v) => chart.fmt(u, [v])[0] });
      columns.push(data[key]);
      if (rollup && data[key + "_max"]) {
        series.push({ label: label + " max", stroke: color, width: 0.5, dash: [4, 3], spanGaps: false, value: (u, v) => chart.fmt(u, [v])[0] });
        columns.push(data[key + "_max"]);
      }
    }
    const opts = {
      title: chart.title,
      width: width,
      height: 180,
      series: series,
      scales: { x: { time: true, range: () => [data.since, data.now] }, y: chart.max ? { range: [0, chart.max] } : { auto: true } },
      axes: [{}, { values: chart.fmt, size: 70 }],
    };
    return { opts: opts, columns: columns };
  }

  function render(data) {
    const width = Math.min(root.clientWidth || 800, 1100);
    for (const chart of charts) {
      const target = document.getElementById("chart-" + chart.id);
      if (!target) continue;
      const built = build(chart, data, width);
      if (plots[chart.id]) plots[chart.id].destroy();
      plots[chart.id] = new uPlot(built.opts, built.columns, target);
    }
    const empty = root.querySelector(".charts-empty");
    if (empty) empty.hidden = data.t.length > 0;
  }

  function load() {
    window.clearTimeout(timer);
    fetch(url + "?range=" + encodeURIComponent(range), { credentials: "same-origin" })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((data) => {
        render(data);
        // Raw samples move every interval; rollups at most once a minute.
        const every = range === "1h" ? Math.max(data.resolution, 2) : 60;
        timer = window.setTimeout(load, every * 1000);
      })
      .catch(() => { timer = window.setTimeout(load, 30000); });
  }

  for (const button of root.querySelectorAll("button[data-range]")) {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      for (const other of root.querySelectorAll("button[data-range]")) {
        other.classList.toggle("selected", other === button);
      }
      load();
    });
  }
  load();
})();
