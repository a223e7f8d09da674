// peerwarden dashboard: reads the daemon's JSON API every 2 s and draws it by hand (SVG,
// DOM). No dependencies, no requests to anywhere but the daemon that served the page.
"use strict";

const CLASSES = ["p2p", "video", "web", "other"];
// Okabe & Ito's colour-blind-safe palette; style.css has the same values.
const COLOR = { p2p: "#e69f00", video: "#0072b2", web: "#009e73", other: "#cc79a7" };
// Chart ranges: at most a few hundred points each (the API allows 1,000).
const RANGES = [
  { name: "1m", window: "1m", step: "1s" },
  { name: "5m", window: "5m", step: "2s" },
  { name: "15m", window: "15m", step: "5s" },
  { name: "1h", window: "1h", step: "15s" },
];
const REFRESH_MS = 2000;
const POLICY_EVERY_MS = 15000; // a policy's YAML can be megabytes; it rarely changes
const SVG_NS = "http://www.w3.org/2000/svg";

const ui = { range: 1, dir: "total" };
let series = null; // the last /api/v1/mix/series answer
let chart = null; // geometry of the last drawing, for the hover read-out
let policyAt = -Infinity;
let busy = false;
let everOnline = false;

const $ = (id) => document.getElementById(id);

/** Makes an element (`svg:` prefix for SVG) with attributes and children. */
function el(tag, attrs, ...kids) {
  const e = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "style") {
      // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
      for (const decl of v.split(";")) {
        const i = decl.indexOf(":");
        if (i > 0) e.style.setProperty(decl.slice(0, i).trim(), decl.slice(i + 1).trim());
      }
    } else {
      e.setAttribute(k, v);
    }
  }
  for (const k of kids.flat()) if (k != null) e.append(k instanceof Node ? k : String(k));
  return e;
}

// ---- formatting -------------------------------------------------------------------------

function num(x) {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}
/** Bits per second → [number, unit]. */
function rate(bps) {
  for (const [u, f] of [["Gbit/s", 1e9], ["Mbit/s", 1e6], ["kbit/s", 1e3]]) {
    if (bps >= f) return [num(bps / f), u];
  }
  return [bps.toFixed(0), "bit/s"];
}
function bytes(b) {
  for (const [u, f] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) if (b >= f) return num(b / f) + " " + u;
  return b + " B";
}
function count(n) {
  for (const [u, f] of [["G", 1e9], ["M", 1e6], ["k", 1e3]]) if (n >= f) return num(n / f) + u;
  return String(n);
}
function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 1) return "now";
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}
function duration(s) {
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return Math.round(s / 86400) + " d";
}
const two = (n) => String(n).padStart(2, "0");
function clock(t, seconds) {
  const d = new Date(t);
  return two(d.getHours()) + ":" + two(d.getMinutes()) + (seconds ? ":" + two(d.getSeconds()) : "");
}
/** `[up, down]` in the direction shown. */
function pick(pair) {
  return ui.dir === "up" ? pair[0] : ui.dir === "down" ? pair[1] : pair[0] + pair[1];
}
const sum = (a) => a.reduce((x, y) => x + y, 0);
const chip = (label, cls) => el("span", { class: "chip", style: `--c:${COLOR[cls] || "#98a2b3"}` }, label);

// ---- the API ----------------------------------------------------------------------------

class HttpError extends Error {
  constructor(path, status, detail) {
    super(`GET ${path} answered ${status}${detail ? ": " + detail : ""}`);
    this.status = status;
  }
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store", headers: { accept: "application/json" } });
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    // A body that is not JSON: the status says enough.
  }
  if (!r.ok) throw new HttpError(path, r.status, body && body.detail);
  return body;
}

async function getSeries() {
  const r = RANGES[ui.range];
  try {
    return await getJSON(`/api/v1/mix/series?window=${r.window}&step=${r.step}`);
  } catch (e) {
    // A window longer than the daemon's history: fall back to a shorter range.
    if (e.status === 400 && ui.range > 0) {
      ui.range--;
      drawRangeButtons();
      return getSeries();
    }
    throw e;
  }
}

async function refresh() {
  if (busy) return;
  busy = true;
  const wantPolicy = Date.now() - policyAt > POLICY_EVERY_MS;
  try {
    const [ser, mix, flows, status, policy, subs, swarms] = await Promise.all([
      getSeries(),
      getJSON("/api/v1/mix?window=10s"),
      getJSON("/api/v1/flows?limit=20"),
      getJSON("/api/v1/status"),
      wantPolicy ? getJSON("/api/v1/policy").catch((e) => (e.status === 404 ? null : Promise.reject(e))) : undefined,
      // Not every daemon has this route yet: any error answer hides the panel.
      getJSON("/api/v1/subscribers/top").catch((e) => (e instanceof HttpError ? null : Promise.reject(e))),
      // 404: the swarm view is off (or the daemon has no such route); the panel says so.
      getJSON("/api/v1/swarms?sort=transit_bytes&limit=10").catch((e) =>
        e instanceof HttpError ? { off: e.status === 404, error: e.message } : Promise.reject(e)),
    ]);
    online();
    series = ser;
    draw(() => drawChart());
    draw(() => drawTopLabels());
    draw(() => drawRates(mix));
    draw(() => drawFlows(flows.flows || []));
    draw(() => drawProbe(status));
    if (wantPolicy) {
      policyAt = Date.now();
      draw(() => drawPolicy(policy));
    }
    draw(() => drawSubscribers(subs));
    draw(() => drawSwarms(swarms));
  } catch (e) {
    offline(e);
  } finally {
    busy = false;
  }
}

/** Runs one panel's drawing; a bug in one panel must not blank the others or read as an outage. */
function draw(f) {
  try {
    f();
  } catch (e) {
    console.error(e);
  }
}

function online() {
  everOnline = true;
  $("banner").hidden = true;
  document.querySelector("main").classList.remove("stale");
  const c = $("conn");
  c.className = "pill pill-ok";
  c.textContent = "live";
  $("updated").textContent = "updated " + clock(Date.now(), true);
}

function offline(e) {
  $("banner").hidden = false;
  // No answer at all, or an answer that is an error: say which.
  $("banner-title").textContent = e instanceof HttpError ? "API error" : "API unreachable";
  $("banner-detail").textContent =
    e instanceof HttpError ? "(" + e.message + ")" : "(no answer from " + location.host + ")";
  $("banner-stale").hidden = !everOnline;
  document.querySelector("main").classList.add("stale");
  const c = $("conn");
  c.className = "pill pill-bad";
  c.textContent = "offline";
}

// ---- rate cards -------------------------------------------------------------------------

function makeRateCards() {
  for (const c of CLASSES) {
    $("rates").append(
      el("div", { class: "card rate", id: "rate-" + c, style: `--c:${COLOR[c]}` },
        el("div", { class: "cls" }, el("span", { class: "sw" }), c, el("span", { class: "share" }, "–")),
        el("div", { class: "big" }, "–"),
        el("div", { class: "dirs" }, "\u00a0"),
        el("div", { class: "meter" }, el("span", { style: "width:0" })),
      ),
    );
  }
}

function drawRates(mix) {
  // The mix covers up to 10 s; right after start, less.
  const secs = Math.max(mix.window_seconds || 0, 1);
  const bps = (pair) => [pair[0] * 8 / secs, pair[1] * 8 / secs];
  const total = sum(CLASSES.map((c) => sum(bps(mix.classes[c].bytes))));
  const busiest = Math.max(...CLASSES.map((c) => sum(bps(mix.classes[c].bytes))));
  for (const c of CLASSES) {
    const u = mix.classes[c];
    const [up, down] = bps(u.bytes);
    // An idle class reads "0" in the busiest class's unit, so the cards compare at a glance.
    const [v, unit] = up + down > 0 ? rate(up + down) : ["0", rate(busiest)[1]];
    const card = $("rate-" + c);
    const share = total > 0 ? ((up + down) / total) * 100 : 0;
    card.dataset.bps = Math.round(up + down);
    card.querySelector(".big").replaceChildren(v, el("small", {}, unit));
    card.querySelector(".dirs").textContent =
      `↓ ${rate(down).join(" ")} · ↑ ${rate(up).join(" ")} · ${u.flows} flow${u.flows === 1 ? "" : "s"}`;
    card.querySelector(".share").textContent = total > 0 ? share.toFixed(0) + "%" : "–";
    card.querySelector(".meter span").style.width = share.toFixed(1) + "%";
  }
}

// ---- the stacked area chart -------------------------------------------------------------

function drawRangeButtons() {
  $("range").replaceChildren(
    ...RANGES.map((r, i) => {
      const b = el("button", { class: i === ui.range ? "on" : null }, r.name);
      b.onclick = () => {
        ui.range = i;
        drawRangeButtons();
        refresh();
      };
      return b;
    }),
  );
}

/** A round axis step giving about `n` ticks up to `max`. */
function niceStep(max, n) {
  const raw = max / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
}

function drawChart() {
  const svg = $("mix-chart");
  const W = $("chart-wrap").clientWidth || 800;
  const H = 290;
  const m = { l: 50, r: 14, t: 18, b: 24 };
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  chart = null;
  hideTip();
  if (!series) return;

  const step = series.step_seconds;
  const pts = series.points.map((p) => ({
    t: Date.parse(p.t),
    v: CLASSES.map((c) => (pick(p.classes[c].bytes) * 8) / step),
  }));
  // What the page shows, for people and for tests: points and bytes (both directions) per class.
  svg.dataset.points = pts.length;
  svg.dataset.window = series.window_seconds;
  svg.dataset.step = step;
  for (const c of CLASSES) {
    svg.dataset[c + "Bytes"] = sum(series.points.map((p) => sum(p.classes[c].bytes)));
  }
  const shown = pts.length ? Math.min(series.window_seconds, pts.length * step) : series.window_seconds;
  $("chart-caption").textContent =
    (shown < series.window_seconds ? `last ${duration(shown)} (since start)` : `last ${RANGES[ui.range].name}`) + ` · ${step} s steps`;

  const tEnd = pts.length ? pts[pts.length - 1].t : Date.now();
  // A daemon up for less than the window: span what there is rather than an empty left side.
  const tStart = Math.max(tEnd - series.window_seconds * 1000, pts.length ? pts[0].t - step * 1000 : -Infinity);
  const x = (t) => m.l + ((t - tStart) / (tEnd - tStart)) * (W - m.l - m.r);
  const totals = pts.map((p) => sum(p.v));
  const max = Math.max(0, ...totals);
  // Axis unit from the top of the scale, so ticks read 0-800 kbit/s or 0-12 Mbit/s.
  const tickStep = max > 0 ? niceStep(max, 4) : 1e6;
  const top = max > 0 ? Math.ceil(max / tickStep) * tickStep : 4e6;
  const [, unit] = rate(top);
  const div = { "Gbit/s": 1e9, "Mbit/s": 1e6, "kbit/s": 1e3, "bit/s": 1 }[unit];
  const y = (v) => H - m.b - (v / top) * (H - m.t - m.b);
  svg.dataset.maxBps = Math.round(max);

  for (let v = 0; v <= top + tickStep / 2; v += tickStep) {
    svg.append(el("svg:line", { class: "grid-line", x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
    const label = +(v / div).toFixed(2);
    svg.append(el("svg:text", { class: "axis-text", x: m.l - 8, y: y(v) + 4, "text-anchor": "end" }, label));
  }
  svg.append(el("svg:text", { class: "unit", x: 4, y: 11 }, unit));

  // Time ticks at round wall-clock times, at least ~80 px apart.
  const span = (tEnd - tStart) / 1000;
  const maxTicks = Math.max(2, Math.min(8, Math.floor((W - m.l - m.r) / 80)));
  const every = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800].find((s) => span / s <= maxTicks) || 3600;
  for (let t = Math.ceil(tStart / 1000 / every) * every * 1000; t <= tEnd; t += every * 1000) {
    svg.append(el("svg:line", { class: "grid-line", x1: x(t), x2: x(t), y1: H - m.b, y2: H - m.b + 4 }));
    svg.append(el("svg:text", { class: "axis-text", x: x(t), y: H - 6, "text-anchor": "middle" }, clock(t, every < 60)));
  }

  if (!pts.length) {
    svg.append(el("svg:text", { class: "empty-text", x: W / 2, y: H / 2, "text-anchor": "middle" }, "waiting for the first readings…"));
    return;
  }
  // One point is a step wide: draw it from the step's start.
  const drawn = pts.length === 1 ? [{ t: pts[0].t - step * 1000, v: pts[0].v }, pts[0]] : pts;
  const base = drawn.map(() => 0);
  CLASSES.forEach((c, i) => {
    // A class with no traffic in the range would only draw its edge over the one below.
    if (!drawn.some((p) => p.v[i] > 0)) return;
    const upper = drawn.map((p, j) => base[j] + p.v[i]);
    const fwd = drawn.map((p, j) => `${x(p.t).toFixed(1)},${y(upper[j]).toFixed(1)}`);
    const back = drawn.map((p, j) => `${x(p.t).toFixed(1)},${y(base[j]).toFixed(1)}`).reverse();
    svg.append(el("svg:path", { d: `M${fwd.join("L")}L${back.join("L")}Z`, fill: COLOR[c], "fill-opacity": 0.82, "data-class": c }));
    svg.append(el("svg:path", { d: `M${fwd.join("L")}`, fill: "none", stroke: COLOR[c], "stroke-width": 1.5 }));
    upper.forEach((v, j) => (base[j] = v));
  });
  const cursor = el("svg:line", { class: "cursor", y1: m.t, y2: H - m.b, visibility: "hidden" });
  svg.append(cursor);
  chart = { pts, x, W, cursor };
}

function showTip(ev) {
  if (!chart) return;
  const svg = $("mix-chart");
  const box = svg.getBoundingClientRect();
  const sx = ((ev.clientX - box.left) / box.width) * chart.W;
  let best = 0;
  chart.pts.forEach((p, i) => {
    if (Math.abs(chart.x(p.t) - sx) < Math.abs(chart.x(chart.pts[best].t) - sx)) best = i;
  });
  const p = chart.pts[best];
  const px = chart.x(p.t);
  chart.cursor.setAttribute("x1", px);
  chart.cursor.setAttribute("x2", px);
  chart.cursor.setAttribute("visibility", "visible");
  const tip = $("tip");
  tip.replaceChildren(
    el("div", { class: "when" }, clock(p.t, true) + " · " + ui.dir),
    ...CLASSES.map((c, i) =>
      el("div", { class: "row" }, el("span", { class: "sw", style: `--c:${COLOR[c]}` }), c, el("b", {}, rate(p.v[i]).join(" "))),
    ),
    el("div", { class: "row" }, "total", el("b", {}, rate(sum(p.v)).join(" "))),
  );
  tip.hidden = false;
  const left = (px / chart.W) * box.width;
  tip.style.left = (left > box.width / 2 ? left - tip.offsetWidth - 12 : left + 12) + "px";
  tip.style.top = "16px";
}

function hideTip() {
  $("tip").hidden = true;
  if (chart) chart.cursor.setAttribute("visibility", "hidden");
}

// ---- top labels, over the chart's range -------------------------------------------------

function drawTopLabels() {
  const totals = {};
  for (const p of series.points) {
    for (const [name, u] of Object.entries(p.labels)) totals[name] = (totals[name] || 0) + pick(u.bytes);
  }
  const all = sum(Object.values(totals));
  // The class split over the range, as one bar.
  const byClass = CLASSES.map((c) => sum(series.points.map((p) => pick(p.classes[c].bytes))));
  const classTotal = sum(byClass);
  $("class-share").replaceChildren(
    el("div", { class: "share-bar" },
      ...CLASSES.map((c, i) => el("span", { title: c, style: `width:${classTotal ? ((byClass[i] / classTotal) * 100).toFixed(2) : 0}%;background:${COLOR[c]}` }))),
    el("div", { class: "share-legend" },
      ...CLASSES.map((c, i) =>
        el("span", {}, el("span", { class: "sw", style: `--c:${COLOR[c]}` }), c, " ",
          el("b", {}, classTotal ? ((byClass[i] / classTotal) * 100).toFixed(0) + "%" : "–")))),
  );
  const rows = Object.entries(totals).filter(([, b]) => b > 0).sort((a, b) => b[1] - a[1]).slice(0, 8);
  $("labels-caption").textContent = `last ${RANGES[ui.range].name} · ${ui.dir}`;
  const list = $("top-labels");
  if (!rows.length) {
    list.replaceChildren(el("li", { class: "empty" }, "no traffic in this range"));
    return;
  }
  const classOf = series.label_classes || {};
  list.replaceChildren(
    ...rows.map(([name, b]) => {
      const c = COLOR[classOf[name]] || "#98a2b3";
      return el("li", { "data-label": name, style: `--c:${c}` },
        el("span", { class: "nm" }, el("span", { class: "sw" }), name),
        el("span", { class: "val" }, bytes(b), el("small", {}, ((b / all) * 100).toFixed(0) + "%")),
        el("span", { class: "bar" }, el("span", { style: `width:${((b / rows[0][1]) * 100).toFixed(1)}%` })),
      );
    }),
  );
}

// ---- flows ------------------------------------------------------------------------------

function endpoint(addr, port) {
  return (addr.includes(":") ? `[${addr}]` : addr) + ":" + port;
}

function drawFlows(flows) {
  const body = $("flows").tBodies[0];
  $("flows-count").textContent = flows.length ? `${flows.length} shown` : "";
  if (!flows.length) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 6 }, "no flows in the table")));
    return;
  }
  body.replaceChildren(
    ...flows.map((f) =>
      el("tr", { class: "flow", "data-label": f.label, "data-class": f.class },
        el("td", { title: `${f.class}, decided by ${f.confidence}` }, chip(f.label, f.class)),
        el("td", {}, f.subscriber || el("span", { class: "muted" }, "—")),
        el("td", { class: "ep" },
          el("span", { class: "proto" }, f.proto), endpoint(f.src, f.sport),
          el("span", { class: "arrow" }, "→"), endpoint(f.dst, f.dport)),
        el("td", { class: "num" }, bytes(f.bytes[0])),
        el("td", { class: "num" }, bytes(f.bytes[1])),
        el("td", { class: "num muted", title: f.last_seen }, ago(f.last_seen).replace(" ago", "")),
      ),
    ),
  );
}

// ---- policy, probe, subscribers ---------------------------------------------------------

function drawPolicy(p) {
  const state = $("policy-state");
  const body = $("policy-body");
  if (!p) {
    state.className = "pill";
    state.textContent = "none";
    body.replaceChildren(el("p", { class: "none" }, "No policy loaded: flows are labelled and counted, nothing is limited."));
    return;
  }
  state.className = "pill pill-ok";
  state.textContent = "active";
  body.replaceChildren(
    el("dl", {},
      el("dt", {}, "origin"), el("dd", {}, el("code", {}, p.origin)),
      el("dt", {}, "loaded"), el("dd", { title: p.loaded_at }, ago(p.loaded_at)),
      el("dt", {}, "subscribers"), el("dd", {}, count(p.subscribers)),
      el("dt", {}, "plans"), el("dd", { class: "tags" }, ...(p.plans.length ? p.plans.map((n) => el("span", { class: "tag" }, n)) : ["none"])),
    ),
  );
}

function drawProbe(s) {
  $("uptime").textContent = "up " + duration(s.uptime_seconds);
  const attached = s.attached.length
    ? s.attached.map((a) =>
        el("div", { class: "attach" },
          el("span", {}, el("b", {}, a.interface), " ", el("span", { class: "muted" }, a.program)),
          el("span", { class: "mode mode-" + a.mode }, a.mode)))
    : [el("p", { class: "none" }, "No program attached.")];
  const f = (s.maps && s.maps.flows) || { entries: 0, capacity: 0 };
  const pct = f.capacity ? (f.entries / f.capacity) * 100 : 0;
  const stats = [
    ["packets", "packets"], ["flows_created", "flows created"], ["flows_labelled", "labelled in kernel"],
    ["verdicts_applied", "deep verdicts"], ["ring_drops", "ring drops"], ["policy_drops", "policy drops"],
  ].filter(([k]) => k in (s.probe || {}));
  $("probe-body").replaceChildren(
    ...attached,
    el("div", { class: "fill" },
      el("div", { class: "attach" }, el("span", {}, "flow table"),
        el("span", { class: "muted" }, `${count(f.entries)} / ${count(f.capacity)} · ${pct.toFixed(pct < 10 ? 1 : 0)}%`)),
      el("div", { class: "bar" }, el("span", { class: pct > 85 ? "hot" : null, style: `width:${Math.min(pct, 100).toFixed(1)}%` }))),
    el("div", { class: "stats" },
      ...stats.map(([k, name]) =>
        el("div", { class: /drops/.test(k) && s.probe[k] > 0 ? "warn" : null }, el("b", {}, count(s.probe[k])), el("span", {}, name)))),
  );
}

/** `/api/v1/subscribers/top`, read loosely: a list, or `{subscribers: [...]}`, of entries
 * naming a subscriber with `bytes` (`[up, down]` or a number) and perhaps `classes`. */
function drawSubscribers(answer) {
  const card = $("subs-card");
  const list = answer && (Array.isArray(answer) ? answer : answer.subscribers || answer.top);
  if (!Array.isArray(list)) {
    card.hidden = true;
    return;
  }
  card.hidden = false;
  const total = (b) => (Array.isArray(b) ? sum(b) : +b || 0);
  const rows = list.slice(0, 8).map((s) => ({
    name: s.subscriber || s.id || s.name || "?",
    bytes: total(s.bytes),
    classes: s.classes || {},
  }));
  const max = Math.max(1, ...rows.map((r) => r.bytes));
  $("top-subs").replaceChildren(
    ...(rows.length ? rows.map((r) => {
      // One bar per subscriber, split by class when the answer says how.
      const parts = CLASSES.map((c) => [c, r.classes[c] ? total(r.classes[c].bytes ?? r.classes[c]) : 0]).filter(([, b]) => b > 0);
      const segs = parts.length
        ? parts.map(([c, b]) => el("span", { style: `width:${((b / max) * 100).toFixed(1)}%;background:${COLOR[c]};display:inline-block` }))
        : [el("span", { style: `width:${((r.bytes / max) * 100).toFixed(1)}%;background:#475467` })];
      return el("li", {},
        el("span", { class: "nm" }, r.name), el("span", { class: "val" }, bytes(r.bytes)),
        el("span", { class: "bar", style: "display:flex" }, ...segs));
    }) : [el("li", { class: "empty" }, "no subscriber traffic")]),
  );
}

// ---- swarms by transit (issue 15) -------------------------------------------------------

const LOCAL_COLOR = "#12b76a";
const TRANSIT_COLOR = "#f79009";

function drawSwarms(answer) {
  const list = $("top-swarms");
  if (!answer || !Array.isArray(answer.swarms)) {
    const hint = answer && answer.off ? "swarm view off: swarms: { enabled: true }" : "swarms: " + ((answer && answer.error) || "no answer");
    list.replaceChildren(el("li", { class: "empty" }, hint));
    return;
  }
  const rows = answer.swarms.map((s) => {
    const b = s.bytes || {};
    const local = +b.local || 0;
    const transit = (+b.transit_up || 0) + (+b.transit_down || 0);
    return { id: String(s.id || "?"), subs: +s.subscribers || 0, local, transit };
  });
  const max = Math.max(1, ...rows.map((r) => r.local + r.transit));
  const seg = (v, c) => el("span", { style: `width:${((v / max) * 100).toFixed(1)}%;background:${c};display:inline-block` });
  list.replaceChildren(
    ...(rows.length ? rows.map((r) =>
      el("li", { class: "swarm", "data-swarm": r.id, "data-transit": String(r.transit), title: `${r.id}\nlocal ${bytes(r.local)} · transit ${bytes(r.transit)}` },
        el("span", { class: "nm" }, r.id.slice(0, 12) + "… · " + count(r.subs) + " sub"),
        el("span", { class: "val" }, bytes(r.local) + " · " + bytes(r.transit)),
        el("span", { class: "bar", style: "display:flex" }, seg(r.local, LOCAL_COLOR), seg(r.transit, TRANSIT_COLOR))),
    ) : [el("li", { class: "empty" }, "no swarms seen yet")]),
  );
}

// ---- start ------------------------------------------------------------------------------

function start() {
  makeRateCards();
  drawRangeButtons();
  $("legend").replaceChildren(
    ...CLASSES.map((c) => el("span", {}, el("span", { class: "sw", style: `--c:${COLOR[c]}` }), c)),
  );
  for (const b of $("dir").querySelectorAll("button")) {
    b.onclick = () => {
      ui.dir = b.dataset.dir;
      for (const o of $("dir").querySelectorAll("button")) o.classList.toggle("on", o === b);
      if (series) {
        draw(drawChart);
        draw(drawTopLabels);
      }
    };
  }
  const wrap = $("chart-wrap");
  wrap.addEventListener("mousemove", showTip);
  wrap.addEventListener("mouseleave", hideTip);
  // Redraw at the chart's own width whenever the layout changes it (window, columns).
  let drawnWidth = 0;
  new ResizeObserver(() => {
    if (series && wrap.clientWidth !== drawnWidth) {
      drawnWidth = wrap.clientWidth;
      draw(drawChart);
    }
  }).observe(wrap);
  const loop = async () => {
    await refresh();
    setTimeout(loop, REFRESH_MS);
  };
  loop();
}

start();
