// botfleet's dashboard: the charts of /api/v1/dashboard over the chosen
// range (/api/v1/query_range), kept live by /api/v1/stream (one event a
// second: the fleet, the alerts, each chart's newest values). Text from
// the fleet is always set as text, never as markup.
"use strict";

const COLORS = ["#539bf5", "#57ab5a", "#e5534b", "#d6a23a", "#b083f0", "#39c5cf", "#f69d50", "#e275ad"];
const state = { charts: [], series: {}, range: 300, bot: null, ticks: 0 };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function key(labels) {
  return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(",");
}

function shown(labels) {
  return !state.bot || labels.bot === state.bot;
}

function human(v, unit) {
  if (!isFinite(v)) return "-";
  if (unit === "s") {
    if (v < 1) return `${(v * 1000).toPrecision(3)} ms`;
    return `${v.toPrecision(3)} s`;
  }
  if (unit === "B") {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(1)} ${units[i]}`;
  }
  const abs = Math.abs(v);
  const text = abs >= 100 ? v.toFixed(0) : abs >= 1 ? v.toFixed(1) : v.toPrecision(2);
  return unit === "%" ? `${text} %` : unit === "/s" ? `${text}/s` : text;
}

// A line chart of one chart's series on its canvas.
function draw(chart) {
  const canvas = chart.canvas;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 420, height = canvas.clientHeight || 180;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const now = Date.now() / 1000;
  const from = now - state.range;
  // A forecast is drawn a quarter of the range ahead of now.
  const ahead = chart.forecast ? state.range / 4 : 0;
  const lines = Object.values(state.series[chart.id] || {}).filter((s) => shown(s.labels));
  let lo = Infinity, hi = -Infinity, points = 0;
  for (const s of lines) {
    // A value PromQL could not give (0/0: no traffic) is a gap, not a point.
    s.points = s.points.filter((p) => p[0] >= from && isFinite(p[1]));
    for (const [, v] of s.points) { lo = Math.min(lo, v); hi = Math.max(hi, v); points++; }
    s.band = chart.band ? band(s.points) : null;
    s.trend = chart.forecast ? trend(s.points) : null;
    if (s.band) for (const [, l, h] of s.band) { lo = Math.min(lo, l); hi = Math.max(hi, h); }
    if (s.trend) { const v = s.trend.at(now + ahead); if (isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
  }
  canvas.dataset.band = lines.some((s) => s.band && s.band.length) ? "1" : "0";
  canvas.dataset.forecast = lines.some((s) => s.trend) ? "1" : "0";
  canvas.dataset.points = String(points);
  const left = 64, right = 8, top = 8, bottom = 20;
  g.strokeStyle = "#2a333d";
  g.fillStyle = "#8a96a3";
  g.font = "11px system-ui, sans-serif";
  if (!points) {
    g.fillText("no data in this range", left, height / 2);
    chart.legend.replaceChildren();
    return;
  }
  if (lo === hi) { lo = Math.min(0, lo); hi = hi === 0 ? 1 : hi * 1.1; }
  lo = Math.min(lo, 0);
  canvas.dataset.scale = `${lo} ${hi}`;
  const x = (t) => left + (width - left - right) * (t - from) / (state.range + ahead);
  const y = (v) => top + (height - top - bottom) * (1 - (v - lo) / (hi - lo));
  for (let i = 0; i <= 3; i++) {
    const v = lo + (hi - lo) * i / 3;
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(width - right, y(v)); g.stroke();
    g.fillText(human(v, chart.unit), 2, y(v) + 4);
  }
  const legend = [];
  lines.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    if (s.band && s.band.length > 1) {
      // The anomaly band: where the detector's baseline expects the line.
      g.fillStyle = color + "22";
      g.beginPath();
      s.band.forEach(([t, l], j) => (j ? g.lineTo(x(t), y(l)) : g.moveTo(x(t), y(l))));
      for (let j = s.band.length - 1; j >= 0; j--) g.lineTo(x(s.band[j][0]), y(s.band[j][2]));
      g.closePath();
      g.fill();
    }
    if (s.trend) {
      // The forecast: the least-squares line from now, a quarter range on.
      g.strokeStyle = color;
      g.setLineDash([4, 4]);
      g.beginPath();
      g.moveTo(x(now), y(s.trend.at(now)));
      g.lineTo(x(now + ahead), y(s.trend.at(now + ahead)));
      g.stroke();
      g.setLineDash([]);
    }
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    let last = null;
    for (const [t, v] of s.points) {
      // A gap over 3 steps breaks the line.
      if (last !== null && t - last > Math.max(3, 3 * state.step)) g.moveTo(x(t), y(v));
      else if (last === null) g.moveTo(x(t), y(v));
      else g.lineTo(x(t), y(v));
      last = t;
    }
    g.stroke();
    const name = Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(" ") || chart.title;
    const newest = s.points.length ? s.points[s.points.length - 1][1] : NaN;
    legend.push(el("span", {}, el("i", { style: `background:${color}` }), `${name}: ${human(newest, chart.unit)}`));
  });
  chart.legend.replaceChildren(...legend);
}

// The detector's baseline at each point, from the points before it: an
// EWMA mean and variance (lambda 0.2, as the alert rules' anomalous()),
// the band mean +- 3 sigma, after a warm-up of 10 points; never below zero
// for a line that never is (a rate, a latency).
function band(points) {
  const lambda = 0.2, out = [];
  const floor = points.every(([, v]) => v >= 0) ? 0 : -Infinity;
  let mean = null, variance = 0, seen = 0;
  for (const [t, v] of points) {
    if (mean !== null && seen >= 10) {
      const sd = Math.sqrt(variance);
      out.push([t, Math.max(floor, mean - 3 * sd), mean + 3 * sd]);
    }
    if (mean === null) mean = v;
    else { const d = v - mean; mean += lambda * d; variance = (1 - lambda) * (variance + lambda * d * d); }
    seen++;
  }
  return out;
}

// The least-squares line through the points (predict_linear's), or null
// with fewer than 10.
function trend(points) {
  if (points.length < 10) return null;
  const n = points.length;
  const mt = points.reduce((a, p) => a + p[0], 0) / n, mv = points.reduce((a, p) => a + p[1], 0) / n;
  let sxy = 0, sxx = 0;
  for (const [t, v] of points) { sxy += (t - mt) * (v - mv); sxx += (t - mt) * (t - mt); }
  if (sxx === 0) return null;
  const slope = sxy / sxx;
  return { at: (t) => mv + slope * (t - mt) };
}

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// Each chart's series over the range, from the store.
async function loadRange() {
  const end = Math.floor(Date.now() / 1000);
  state.step = Math.max(1, Math.round(state.range / 300));
  await Promise.all(state.charts.map(async (chart) => {
    const q = new URLSearchParams({ query: chart.expr, start: end - state.range, end, step: state.step });
    const series = {};
    try {
      const body = await api(`/api/v1/query_range?${q}`);
      for (const s of body.data.result) {
        series[key(s.metric)] = { labels: s.metric, points: s.values.map(([t, v]) => [t, Number(v)]) };
      }
    } catch (e) { /* an empty chart says so */ }
    state.series[chart.id] = series;
    draw(chart);
  }));
}

function fleetTable(fleet) {
  const table = document.getElementById("fleet-table");
  const head = el("tr", {}, ...["bot / worker", "state", "pid", "uptime", "restarts", "CPU %", "memory MiB", "updates/s", "p99 ms", "queue", "429s", "failed", "dead letters"].map((h) => el("th", {}, h)));
  const rows = [head];
  const num = (v, d) => (v === null || v === undefined) ? "-" : Number(v).toFixed(d);
  const up = (s) => s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
  for (const b of fleet.bots) {
    if (state.bot && b.name !== state.bot) continue;
    rows.push(el("tr", { class: "bot", "data-bot": b.name }, ...[b.name, b.state, "", "", String(b.restarts), "", "", num(b.rate, 1), num(b.p99_ms, 1), String(b.queue), String(b.throttled ?? 0), String(b.failed), String(b.dead_lettered)].map((c) => el("td", {}, c))));
    for (const w of b.workers) {
      rows.push(el("tr", { class: "worker", "data-pid": String(w.pid) }, ...[`worker ${w.slot}`, w.state, String(w.pid), up(w.uptime_s), String(w.restarts), num(w.cpu_pct, 1), num(w.rss_mib, 1), "", "", "", "", "", ""].map((c) => el("td", {}, c))));
    }
  }
  table.replaceChildren(...rows);
  const nav = document.getElementById("nav");
  const links = [el("a", { href: "#", class: state.bot ? "" : "here" }, "fleet")];
  for (const b of fleet.bots) links.push(el("a", { href: `#bot=${encodeURIComponent(b.name)}`, class: state.bot === b.name ? "here" : "" }, b.name));
  nav.replaceChildren(...links);
}

function alertList(alerts) {
  const list = document.getElementById("alert-list");
  const items = alerts
    .filter((a) => !state.bot || !a.labels.bot || a.labels.bot === state.bot)
    .map((a) => {
      const labels = Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => `${k}=${v}`).join(" ");
      const since = new Date((a.fired_at || a.active_at) * 1000).toLocaleTimeString();
      return el("li", { class: a.state, "data-alert": a.labels.alertname },
        el("span", { class: "state" }, a.state), ` ${a.labels.alertname} `, el("span", {}, `[${labels}]`),
        ` since ${since}`, a.annotations && a.annotations.summary ? ` — ${a.annotations.summary}` : "");
    });
  list.replaceChildren(...(items.length ? items : [el("li", { class: "none" }, "none")]));
}

function historyList(history) {
  const list = document.getElementById("alert-history");
  const items = history
    .filter((c) => !state.bot || !c.labels.bot || c.labels.bot === state.bot)
    .reverse()
    .map((c) => el("li", { class: c.to || "inactive", "data-change": `${c.labels.alertname}:${c.to || "inactive"}` },
      `${new Date(c.t * 1000).toLocaleTimeString()} `, el("span", { class: "state" }, c.to || "inactive"),
      ` ${c.labels.alertname} ${c.labels.bot ? `bot=${c.labels.bot}` : ""} (was ${c.from || "inactive"})`));
  list.replaceChildren(...(items.length ? items : [el("li", { class: "none" }, "none")]));
}

function onTick(event) {
  const data = JSON.parse(event.data);
  state.ticks++;
  document.body.dataset.ticks = String(state.ticks);
  document.getElementById("clock").textContent = `live · ${new Date(data.t * 1000).toLocaleTimeString()}`;
  fleetTable(data.fleet);
  alertList(data.alerts);
  historyList(data.history || []);
  for (const chart of state.charts) {
    const series = state.series[chart.id] || (state.series[chart.id] = {});
    for (const [labels, value] of data.charts[chart.id] || []) {
      const k = key(labels);
      (series[k] || (series[k] = { labels, points: [] })).points.push([data.t, value]);
    }
    draw(chart);
  }
}

function route() {
  const m = location.hash.match(/^#bot=(.+)$/);
  state.bot = m ? decodeURIComponent(m[1]) : null;
  document.getElementById("fleet-title").textContent = state.bot ? `Bot ${state.bot} and its workers` : "Bots and workers";
  for (const chart of state.charts) draw(chart);
}

async function main() {
  const body = await api("/api/v1/dashboard");
  const area = document.getElementById("charts");
  state.charts = body.charts.map((c) => {
    const canvas = el("canvas", { "data-chart": c.id, "data-points": "0" });
    const legend = el("div", { class: "legend" });
    area.append(el("figure", {}, el("figcaption", {}, c.title), canvas, legend));
    return { ...c, canvas, legend };
  });
  const range = document.getElementById("range");
  range.addEventListener("change", () => { state.range = Number(range.value); loadRange(); });
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => state.charts.forEach(draw));
  route();
  await loadRange();
  const live = new EventSource("/api/v1/stream");
  live.onmessage = onTick;
  live.onerror = () => { document.getElementById("clock").textContent = "disconnected; retrying…"; };
}

main().catch((e) => { document.getElementById("clock").textContent = `error: ${e.message}`; });
