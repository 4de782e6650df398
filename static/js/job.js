// Keeps a job page current while the job runs: polls the job's JSON and
// appends new log lines, without reloading the page. No external libraries.
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root || root.dataset.active !== "1") return;
  const url = root.dataset.statusUrl;
  const logEl = document.getElementById("job-log");
  let offset = logEl.textContent.length;

  const MIB = 1024 * 1024;
  const BYTE_KEYS = /^(data|memory|disk)_(processed|remaining|total)$/;

  // Byte counts as MiB and rates as MiB/s, so migration progress reads naturally.
  function formatValue(key, value) {
    if (typeof value !== "number") return Array.isArray(value) ? value.join(", ") : String(value);
    if (BYTE_KEYS.test(key)) return (value / MIB).toFixed(1) + " MiB";
    if (key.endsWith("_bps")) return (value / MIB).toFixed(1) + " MiB/s";
    if (key.endsWith("_ms")) return value + " ms";
    if (key.endsWith("_s") || key.endsWith("_seconds")) return value + " s";
    return String(value);
  }

  function formatDetail(detail) {
    if (!detail) return "";
    return Object.entries(detail)
      .filter(([key, value]) => value !== null && value !== "" && key !== "moves")
      .map(([key, value]) => key.replace(/_/g, " ") + ": " + formatValue(key, value))
      .join(" · ");
  }

  // An evacuation's table: one row per VM, rebuilt from the job's moves (text only).
  function updateMoves(moves) {
    const table = document.getElementById("evacuation-moves");
    if (!table || !Array.isArray(moves)) return;
    const body = table.querySelector("tbody");
    const jobUrl = table.dataset.jobUrl;
    body.replaceChildren(
      ...moves.map((move) => {
        const row = document.createElement("tr");
        const cell = (text, className) => {
          const td = document.createElement("td");
          td.textContent = text;
          if (className) td.className = className;
          row.appendChild(td);
          return td;
        };
        cell(move.name);
        cell(move.memory_mib + " MiB");
        cell(move.dest || "—");
        const state = document.createElement("span");
        state.className = "jobstatus " + move.state;
        state.textContent = move.state;
        cell("").appendChild(state);
        const link = cell(move.job ? "" : "—");
        if (move.job) {
          const a = document.createElement("a");
          a.href = jobUrl.replace("0", String(move.job));
          a.textContent = "#" + move.job;
          link.appendChild(a);
        }
        cell(move.error || move.reason, "muted");
        return row;
      }),
    );
  }

  async function poll() {
    let data;
    try {
      const response = await fetch(url + "?log_offset=" + offset, { credentials: "same-origin" });
      if (!response.ok) throw new Error(response.status);
      data = await response.json();
    } catch (err) {
      setTimeout(poll, 3000);
      return;
    }
    const status = document.getElementById("job-status");
    status.textContent = data.status_label;
    status.className = "jobstatus " + data.status;
    document.getElementById("job-bar").style.width = data.progress + "%";
    document.getElementById("job-progress").textContent = data.progress;
    document.getElementById("job-detail").textContent = formatDetail(data.detail);
    if (data.detail) updateMoves(data.detail.moves);
    if (data.duration !== null) {
      document.getElementById("job-duration").textContent = data.duration.toFixed(1) + " s";
    }
    if (data.command) document.getElementById("job-command").textContent = data.command;
    if (data.log) {
      logEl.textContent += data.log;
      logEl.scrollTop = logEl.scrollHeight;
    }
    offset = data.log_offset;
    const error = document.getElementById("job-error");
    error.textContent = data.error;
    error.hidden = !data.error;
    if (data.active) {
      setTimeout(poll, 1000);
    } else {
      for (const form of document.querySelectorAll("form[data-job-action]")) form.remove();
      root.dataset.active = "0";
    }
  }
  setTimeout(poll, 1000);
})();
