// jobprov's series chart: one SVG line per provenance bucket, regressions ringed in red with what changed.
// Plain DOM and SVG, no third-party code: the same file draws the live page and the standalone HTML report.
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  // No red here: red is reserved for regressions.
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const REGRESSION = "#d62728";

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }
  function labelText(label) {
    // Keys declared empty (e.g. no config hash) still separate buckets, but say nothing on a legend.
    const entries = Object.entries(label || {}).filter(([, v]) => v !== "" && v !== null);
    return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(", ") : "(no keys)";
  }
  function changeText(changes) {
    if (!changes || !changes.length) return "no provenance change";
    return changes.map((c) => `${c.key}: ${c.before ?? "∅"} → ${c.after ?? "∅"}`).join("; ");
  }
  // Four significant digits wherever a value is said (tooltips, tables, explanations), as the CLI's tables and
  // the HTML report say them.
  function fmt(value) {
    if (value === null || value === undefined) return "n/a";  // the API's null: a NaN or infinity stored
    if (value === 0) return "0";
    const size = Math.abs(value);
    if (size >= 1e5 || size < 1e-3) return value.toExponential(3);
    return String(Number(value.toPrecision(4)));
  }
  function day(ms) { return new Date(ms).toISOString().slice(0, 10); }
  function minute(ms) { return new Date(ms).toISOString().slice(0, 16).replace("T", " "); }
  function clock(ms) { return new Date(ms).toISOString().slice(11, 19); }
  function tenths(ms) { return new Date(ms).toISOString().slice(11, 21); }

  // Axis ticks at round values (1, 2 or 5 times a power of ten) covering [low, high], labelled with as many
  // decimals as the step needs and no more.
  function niceTicks(low, high, wanted) {
    const raw = (high - low) / Math.max(1, wanted);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((f) => f * power).find((s) => s >= raw) || 10 * power;
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    const ticks = [];
    for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) {
      ticks.push({ value: v, text: Math.abs(v) >= 1e6 ? v.toExponential(1) : v.toFixed(decimals) });
    }
    return ticks;
  }

  // The one shape every chart draws: a line is columns of equal length, times_ms (epoch milliseconds),
  // values and job_ids, as the API's series serve them (query/lines.py). line() makes one from anything
  // else (e.g. a job's resource samples); checkLine() refuses a malformed one with a message that names
  // what is wrong, before anything is drawn.
  function line(label, unit, times_ms, values, job_ids) {
    return checkLine({ label, unit, times_ms, values, job_ids }, 0);
  }
  function checkLine(candidate, index) {
    const where = `line ${index} (${labelText(candidate && candidate.label)})`;
    for (const column of ["times_ms", "values", "job_ids"]) {
      if (!Array.isArray(candidate[column])) {
        throw new Error(`${where}: ${column} must be an array (a line is columns: times_ms, values, job_ids)`);
      }
    }
    const n = candidate.times_ms.length;
    if (candidate.values.length !== n || candidate.job_ids.length !== n) {
      throw new Error(`${where}: columns of unequal length (times_ms ${n}, values ${candidate.values.length}, ` +
        `job_ids ${candidate.job_ids.length})`);
    }
    return candidate;
  }
  function regressionText(metric, r) {
    const unit = r.unit ? ` ${r.unit}` : "";
    return `${metric} = ${fmt(r.point.value)}${unit} on ${r.point.time.replace("T", " ").slice(0, 16)} UTC, ` +
      `${fmt(Math.abs(r.deviation))} robust σ from the median ${fmt(r.median)} of its bucket ` +
      `(${labelText(r.label)}). What changed: ${changeText(r.changes)}`;
  }

  function renderSeries(container, data) {
    container.innerHTML = "";
    const lines = (data.lines || []).map(checkLine);
    const regressions = data.regressions || [];
    if (!lines.length) { container.textContent = "no points"; return; }
    // A value the API serves as null (a NaN or infinity in the store) is no point: the line breaks there.
    const width = Math.max(640, Math.min(container.clientWidth || 1000, 1100));
    const height = 420;
    const m = { left: 64, right: 44, top: 24, bottom: 36 };
    // A line's points are columns: times_ms (epoch milliseconds), values, job_ids. Loops, not Math.min(...xs):
    // spreading a long series as arguments overflows the stack.
    let [t0, t1, v0, v1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const line of lines) {
      for (const t of line.times_ms) { if (t < t0) t0 = t; if (t > t1) t1 = t; }
      for (const v of line.values) { if (v === null) continue; if (v < v0) v0 = v; if (v > v1) v1 = v; }
    }
    if (t0 === t1) { t0 -= 3600e3; t1 += 3600e3; }
    if (v0 > v1) { v0 = 0; v1 = 1; }  // every value null
    const pad = (v1 - v0) * 0.08 || Math.abs(v0) * 0.1 || 1;
    v0 -= pad; v1 += pad;
    const x = (t) => m.left + ((t - t0) / (t1 - t0)) * (width - m.left - m.right);
    const y = (v) => height - m.bottom - ((v - v0) / (v1 - v0)) * (height - m.top - m.bottom);

    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `${data.metric} by provenance bucket` }, container);
    const grid = el("g", { class: "grid" }, svg);
    const axis = el("g", { class: "axis" }, svg);
    for (const tick of niceTicks(v0, v1, 5)) {
      el("line", { x1: m.left, x2: width - m.right, y1: y(tick.value), y2: y(tick.value) }, grid);
      el("text", { x: m.left - 6, y: y(tick.value) + 4, "text-anchor": "end" }, axis).textContent = tick.text;
    }
    // Dates for a series over days; times of day (UTC) for one job's minutes or seconds.
    const span = t1 - t0;
    const stamp = span > 2 * 86400e3 ? day : span > 3 * 3600e3 ? minute : span > 60e3 ? clock : tenths;
    for (let i = 0; i <= 6; i++) {
      const t = t0 + ((t1 - t0) * i) / 6;
      el("text", { x: x(t), y: height - m.bottom + 18, "text-anchor": "middle" }, axis).textContent = stamp(t);
    }
    el("line", { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom }, axis);
    el("line", { x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom }, axis);
    el("text", { x: m.left, y: 14 }, axis).textContent = `${data.metric}${lines[0].unit ? " (" + lines[0].unit + ")" : ""}`;

    let tooltip = container.querySelector("#tooltip");
    if (!tooltip) { tooltip = document.createElement("div"); tooltip.id = "tooltip"; container.appendChild(tooltip); }
    const showTip = (event, text) => {
      const box = container.getBoundingClientRect();
      tooltip.textContent = text;
      tooltip.style.display = "block";
      tooltip.style.left = `${Math.min(event.clientX - box.left + 12, width - 430)}px`;
      tooltip.style.top = `${event.clientY - box.top + 12}px`;
    };
    const hideTip = () => { tooltip.style.display = "none"; };

    const legend = document.createElement("div");
    legend.className = "legend";
    lines.forEach((line, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const xs = line.times_ms.map(x), ys = line.values.map((v) => (v === null ? null : y(v)));
      let run = [];
      const flush = () => {
        if (run.length) el("polyline", { class: "line", stroke: colour, points: run.join(" ") }, svg);
        run = [];
      };
      xs.forEach((px, j) => { if (ys[j] === null) flush(); else run.push(`${px},${ys[j]}`); });
      flush();
      xs.forEach((px, j) => {
        if (ys[j] === null) return;
        const job = line.job_ids[j];
        const dot = el("circle", { class: "point", cx: px, cy: ys[j], r: 3.5, fill: colour, "data-job": job }, svg);
        const unit = line.unit ? ` ${line.unit}` : "";
        dot.addEventListener("mousemove", (e) => showTip(e,
          `${labelText(line.label)}: ${fmt(line.values[j])}${unit} on ${minute(line.times_ms[j])} UTC (job ${job})`));
        dot.addEventListener("mouseleave", hideTip);
        if (data.jobLinks !== false) {
          dot.addEventListener("click", () => { location.href = `/jobs/${encodeURIComponent(job)}`; });
        }
      });
      const item = document.createElement("span");
      item.innerHTML = `<span class="swatch" style="background:${colour}"></span>`;
      item.appendChild(document.createTextNode(`${labelText(line.label)} (${line.times_ms.length})`));
      legend.appendChild(item);
    });
    for (const r of regressions) {
      if (r.point.value === null) continue;
      const ring = el("circle", { class: "regression", cx: x(Date.parse(r.point.time)), cy: y(r.point.value),
        r: r.onset ? 9 : 6, "data-job": r.point.job_id, "data-onset": r.onset ? "1" : "0" }, svg);
      const text = regressionText(data.metric, { ...r, unit: lines[0].unit });
      ring.addEventListener("mousemove", (e) => showTip(e, text));
      ring.addEventListener("mouseleave", hideTip);
      ring.addEventListener("click", () => {
        if (!data.explain) return;
        data.explain.style.display = "block";
        data.explain.textContent = text;
      });
    }
    container.appendChild(legend);
  }

  function regressionTable(tbody, regressions) {
    tbody.innerHTML = "";
    if (!regressions.length) {
      tbody.innerHTML = '<tr><td colspan="7" class="muted">no regressions</td></tr>';
      return;
    }
    for (const r of regressions) {
      const tr = tbody.insertRow();
      const cells = [r.point.time.slice(0, 16), labelText(r.label), fmt(r.point.value), fmt(r.median),
        `${fmt(r.deviation)} σ`, changeText(r.changes)];
      for (const c of cells) tr.insertCell().textContent = c;
      const link = document.createElement("a");
      link.href = `/jobs/${encodeURIComponent(r.point.job_id)}`;
      link.textContent = r.point.job_id;
      tr.insertCell().appendChild(link);
    }
  }

  // The API's documents; a 4xx/5xx becomes an error with the API's reason. An API with tokens configured
  // answers 401: the page asks for a token once and keeps it for this tab only (sessionStorage).
  async function getJSON(url) {
    const token = sessionStorage.getItem("jobprov.token");
    const response = await fetch(url, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
    if (response.status === 401) {
      const entered = window.prompt("This jobprov API needs a token (read scope):");
      if (entered) { sessionStorage.setItem("jobprov.token", entered.trim()); return getJSON(url); }
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
    return body;
  }

  window.jobprovChart = { renderSeries, regressionTable, regressionText, changeText, labelText, getJSON, line, fmt };
})();
