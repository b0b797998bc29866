// The operators' dashboard: sign-in, the fleet (counts, a virtualised table, a clustered map),
// a cabinet (live lane chart, lanes, session, actions), the orders feed with an order's weight
// trace, the review queue with its decisions, alerts and restock tasks. Everything live comes
// from /ops/live; what an operator asks for, from the ops API.
"use strict";

const $ = (sel, root) => (root || document).querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const yuan = (fen) => (fen == null ? "–" : "¥" + (fen / 100).toFixed(2));
const time = (t) => (t ? new Date(/Z|[+-]\d\d:?\d\d$/.test(t) ? t : t + "Z").toLocaleString(LANG === "zh" ? "zh-CN" : "en-GB") : "–");
const ROW_H = 28;
const COLOURS = ["#2f6fd6", "#1a9e5a", "#d99a00", "#c9372c", "#8e44ad", "#16a2b8", "#e67e22", "#7f8c8d"];

const app = {
  token: sessionStorage.getItem("heft.token"),
  operator: JSON.parse(sessionStorage.getItem("heft.operator") || "null"),
  live: null,
  fleet: new Map(),
  orders: new Map(),
  reviews: new Map(),
  alerts: new Map(),
  tasks: new Map(),
  view: "fleet",
  sort: { key: "sn", dir: 1 },
  cabinet: null, // {sn, sub, snap, chart, series, doors}
};

// ---------- the ops API ----------

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${app.token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => null);
  if (res.status === 401) signOut();
  if (!res.ok) throw new Error((data && data.message) || res.statusText);
  return data;
}

// ---------- signing in and out ----------

async function signIn(e) {
  e.preventDefault();
  const f = e.target;
  $("#login-error").textContent = "";
  const res = await fetch("/ops/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: f.username.value, password: f.password.value }),
  });
  if (!res.ok) {
    $("#login-error").textContent = t("login.failed");
    return;
  }
  const body = await res.json();
  app.token = body.token;
  app.operator = body.operator;
  sessionStorage.setItem("heft.token", app.token);
  sessionStorage.setItem("heft.operator", JSON.stringify(app.operator));
  start();
}

function signOut() {
  sessionStorage.removeItem("heft.token");
  sessionStorage.removeItem("heft.operator");
  if (app.live) app.live.close();
  location.reload();
}

const managers = () => app.operator && ["admin", "operator"].includes(app.operator.role);

function start() {
  $("#login-view").hidden = true;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  $("#who").textContent = `${app.operator.username} (${app.operator.role})`;
  for (const b of document.querySelectorAll("[data-managers]")) b.hidden = !managers();
  app.live = new Live(app.token, {
    onLink: (state) => { $("#link").textContent = t("link." + state); $("#link").dataset.state = state; },
    onSignedOut: signOut,
  });
  keyed(app.fleet, "fleet", "sn", () => { renderCounts(); scheduleFleet(); });
  if (managers()) keyed(app.orders, "orders", "id", renderOrders);
  keyed(app.reviews, "reviews", "id", renderReviews, (r) => r.status === "open");
  keyed(app.alerts, "alerts", "id", renderAlerts, (a) => !a.resolved_at);
  keyed(app.tasks, "restock", "id", renderTasks, (x) => x.status === "open" || x.status === "in_progress");
  initMap();
  show(location.hash.slice(1) || "fleet");
}

/// Follow a topic into `map` by `key`; `keep` drops rows that no longer belong (a resolved alert).
function keyed(map, topic, key, render, keep) {
  app.live.sub(
    topic,
    (rows) => { map.clear(); for (const r of rows) map.set(r[key], r); render(); },
    (_kind, r) => { if (!keep || keep(r)) map.set(r[key], r); else map.delete(r[key]); render(); },
  );
}

// ---------- views ----------

function show(view) {
  const [name, arg] = view.split("/");
  app.view = name;
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== name + "-view";
  for (const b of document.querySelectorAll("#nav button")) b.classList.toggle("active", b.dataset.view === name);
  if (name !== "cabinet" && app.cabinet) closeCabinet();
  if (name === "cabinet" && arg) openCabinet(decodeURIComponent(arg));
  if (name === "fleet") { renderFleet(); if (app.map) app.map.resize(); }
  if (name === "money") showMoney().catch((e) => { $("#case-result").textContent = t("act.failed").replace("{why}", e.message); });
  if (location.hash.slice(1) !== view) history.replaceState(null, "", "#" + view);
}

// ---------- the fleet ----------

function renderCounts() {
  const rows = [...app.fleet.values()];
  const n = (f) => rows.filter(f).length;
  const counts = [
    ["total", rows.length, ""],
    ["sellable", n((r) => r.sellable), "online"],
    ["liveness.online", n((r) => r.liveness === "online"), "online"],
    ["liveness.suspect", n((r) => r.liveness === "suspect"), "suspect"],
    ["liveness.offline", n((r) => r.liveness === "offline"), "offline"],
    ["busy", n((r) => r.session), "busy"],
    ["alerts", n((r) => r.open_alerts > 0), "offline"],
    ["low", n((r) => r.low_stock > 0), "suspect"],
  ];
  $("#counts").innerHTML = counts
    .map(([k, v, c]) => `<div class="count" data-count="${k}"><span>${c ? `<i class="dot ${c}"></i>` : ""}${esc(t(k.includes(".") ? k : "count." + k))}</span><b>${v}</b></div>`)
    .join("");
}

const COLUMNS = [
  ["sn", "col.sn"], ["liveness", "col.liveness"], ["status", "col.status"], ["doors", "col.doors"],
  ["session", "col.session"], ["temperature_c", "col.temp"], ["open_alerts", "col.alerts"], ["low_stock", "col.low"],
];

function fleetRows() {
  const q = $("#fleet-filter").value.trim().toLowerCase();
  const liveness = $("#fleet-liveness").value;
  const { key, dir } = app.sort;
  const val = (r) => (key === "session" ? (r.session ? r.session.kind : "") : key === "doors" ? r.doors_open.length : r[key] ?? "");
  return [...app.fleet.values()]
    .filter((r) => (!liveness || r.liveness === liveness) && (!q || r.sn.toLowerCase().includes(q) || (r.address || "").toLowerCase().includes(q)))
    .sort((a, b) => (val(a) < val(b) ? -dir : val(a) > val(b) ? dir : 0));
}

let fleetPending = false;
/// Redraw the table and the map once for any number of changes: at the next frame, or at most
/// once a second for a large fleet (a full sort and clustering of 10,000 rows takes a frame or
/// ten; scrolling stays cheap, as only the rows in sight are drawn).
function scheduleFleet() {
  if (fleetPending) return;
  fleetPending = true;
  const later = app.fleet.size > 2000 ? 1000 : 0;
  setTimeout(() => requestAnimationFrame(() => { fleetPending = false; if (app.view === "fleet") renderFleet(); }), later);
}

function renderFleet() {
  $("#fleet-head").innerHTML = COLUMNS.map(([k, w]) => `<span data-sort="${k}">${esc(t(w))}${app.sort.key === k ? (app.sort.dir > 0 ? " ▲" : " ▼") : ""}</span>`).join("");
  app.shown = fleetRows();
  $("#fleet-shown").textContent = t("fleet.shown", { n: app.shown.length, total: app.fleet.size });
  $("#fleet-spacer").style.height = app.shown.length * ROW_H + "px";
  renderVisibleRows();
  clusterMap();
}

/// Only the rows in sight are in the page: ten thousand cabinets stay smooth.
function renderVisibleRows() {
  const box = $("#fleet-scroll");
  const first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - 5);
  const last = Math.min(app.shown.length, first + Math.ceil(box.clientHeight / ROW_H) + 10);
  const html = [];
  for (let i = first; i < last; i++) {
    const r = app.shown[i];
    html.push(`<div class="row" data-sn="${esc(r.sn)}" style="top:${i * ROW_H}px">
      <span>${esc(r.sn)}</span><span><i class="dot ${r.liveness}"></i>${esc(t("liveness." + r.liveness))}</span>
      <span>${esc(t("status." + r.status))}</span><span>${r.doors_open.length ? esc(r.doors_open.join(",")) : "–"}</span>
      <span>${r.session ? esc(t("kind." + r.session.kind)) : ""}</span><span>${r.temperature_c ?? "–"}</span>
      <span>${r.open_alerts || ""}</span><span>${r.low_stock || ""}</span></div>`);
  }
  for (const old of box.querySelectorAll(".row")) old.remove();
  box.insertAdjacentHTML("beforeend", html.join(""));
}

// ---------- the map: GCJ-02 as plain coordinates, clustered on a grid ----------

function initMap() {
  app.map = echarts.init($("#map"));
  app.map.on("datazoom", () => { clearTimeout(app.mapTimer); app.mapTimer = setTimeout(clusterMap, 120); });
  app.map.on("click", (p) => {
    const d = p.data;
    if (!d) return;
    if (d.sn) return show("cabinet/" + encodeURIComponent(d.sn));
    // A cluster: zoom to its cell.
    const [x0, x1, y0, y1] = d.cell;
    app.map.dispatchAction({ type: "dataZoom", dataZoomIndex: 0, startValue: x0, endValue: x1 });
    app.map.dispatchAction({ type: "dataZoom", dataZoomIndex: 1, startValue: y0, endValue: y1 });
  });
}

const stateOf = (r) => (r.liveness !== "online" ? r.liveness : r.session ? "busy" : "online");
const STATE_COLOUR = { online: "#1a9e5a", suspect: "#d99a00", offline: "#c9372c", busy: "#2f6fd6" };
const WORST = ["online", "busy", "suspect", "offline"];

function clusterMap() {
  if (!app.map || app.view !== "fleet") return;
  const placed = (app.shown || []).filter((r) => r.lat != null && r.lng != null);
  const lngs = placed.map((r) => r.lng), lats = placed.map((r) => r.lat);
  const ext = placed.length ? [Math.min(...lngs), Math.max(...lngs), Math.min(...lats), Math.max(...lats)] : [73, 135, 18, 54];
  const pad = Math.max(0.01, (ext[1] - ext[0]) * 0.05, (ext[3] - ext[2]) * 0.05);
  const full = [ext[0] - pad, ext[1] + pad, ext[2] - pad, ext[3] + pad];
  const opt = app.map.getOption();
  const zoom = (i, lo, hi) => {
    const z = opt && opt.dataZoom && opt.dataZoom[i];
    if (!z) return [lo, hi];
    const s = z.startValue ?? lo + ((hi - lo) * (z.start ?? 0)) / 100;
    const e = z.endValue ?? lo + ((hi - lo) * (z.end ?? 100)) / 100;
    return [Math.max(lo, s), Math.min(hi, e)];
  };
  const [x0, x1] = zoom(0, full[0], full[1]);
  const [y0, y1] = zoom(1, full[2], full[3]);
  const cols = 14, rows = 10, cw = (x1 - x0) / cols || 1, ch = (y1 - y0) / rows || 1;
  const cells = new Map();
  for (const r of placed) {
    if (r.lng < x0 || r.lng > x1 || r.lat < y0 || r.lat > y1) continue;
    const k = Math.floor((r.lng - x0) / cw) + "," + Math.floor((r.lat - y0) / ch);
    const c = cells.get(k) || { n: 0, lng: 0, lat: 0, worst: "online", one: r, k };
    c.n++; c.lng += r.lng; c.lat += r.lat;
    if (WORST.indexOf(stateOf(r)) > WORST.indexOf(c.worst)) c.worst = stateOf(r);
    cells.set(k, c);
  }
  const data = [...cells.values()].map((c) => {
    if (c.n === 1) return { value: [c.one.lng, c.one.lat], sn: c.one.sn, symbolSize: 9, itemStyle: { color: STATE_COLOUR[stateOf(c.one)] } };
    const [i, j] = c.k.split(",").map(Number);
    return {
      value: [c.lng / c.n, c.lat / c.n], n: c.n, symbolSize: Math.min(46, 14 + 5 * Math.log2(c.n)),
      cell: [x0 + i * cw, x0 + (i + 1) * cw, y0 + j * ch, y0 + (j + 1) * ch],
      itemStyle: { color: STATE_COLOUR[c.worst], opacity: 0.85 },
      label: { show: true, formatter: String(c.n), color: "#fff" },
    };
  });
  app.map.setOption({
    animation: false,
    grid: { left: 50, right: 20, top: 20, bottom: 40 },
    tooltip: { formatter: (p) => (p.data.sn ? esc(p.data.sn) : p.data.n + "") },
    xAxis: { type: "value", min: full[0], max: full[1], name: "lng", axisLabel: { formatter: (v) => v.toFixed(3) } },
    yAxis: { type: "value", min: full[2], max: full[3], name: "lat", axisLabel: { formatter: (v) => v.toFixed(3) } },
    dataZoom: [{ type: "inside", xAxisIndex: 0, filterMode: "none" }, { type: "inside", yAxisIndex: 0, filterMode: "none" }],
    series: [{ type: "scatter", data, label: { position: "inside" } }],
  });
}

// ---------- a cabinet ----------

function openCabinet(sn) {
  if (app.cabinet && app.cabinet.sn === sn) return;
  if (app.cabinet) closeCabinet();
  const c = { sn, snap: null, times: [], grams: new Map(), doors: [], orders: new Map(), commands: new Map(), alerts: new Map(), health: new Map() };
  app.cabinet = c;
  $("#cabinet-sn").textContent = sn;
  c.sub = app.live.sub(`cabinet/${sn}`, (snap) => cabinetSnapshot(c, snap), (kind, d) => cabinetDelta(c, kind, d));
  // Each lane's cell today (noise, drift followed): not live, it changes by the quarter hour.
  api("GET", `/ops/cabinets/${encodeURIComponent(sn)}/lane-health?days=1`).then((h) => {
    for (const d of h.days) c.health.set(d.lane, d);
    if (app.cabinet === c && c.snap) renderCabinet(c);
  }).catch(() => {});
}

function closeCabinet() {
  const c = app.cabinet;
  app.live.unsub(c.sub);
  if (c.chart) c.chart.destroy();
  app.cabinet = null;
}

function cabinetSnapshot(c, snap) {
  c.snap = snap;
  c.lanes = snap.lanes.map((l) => l.code);
  for (const o of snap.orders) c.orders.set(o.id, o);
  for (const x of snap.commands) c.commands.set(x.cmd_id, x);
  for (const a of snap.alerts) c.alerts.set(a.id, a);
  // The chart starts from the closed-door weights.
  if (snap.closed_g && !c.times.length) {
    c.times.push(Date.now() / 1000);
    for (const code of c.lanes) c.grams.set(code, [snap.closed_g[code] ?? null]);
  }
  makeChart(c);
  renderCabinet(c);
}

function cabinetDelta(c, kind, d) {
  if (!c.snap) return;
  if (kind === "cabinet") c.snap.cabinet = d;
  else if (kind === "weights") {
    c.times.push(d.at_ms / 1000);
    for (const code of c.lanes) {
      const lane = d.lanes.find((l) => l.code === code);
      c.grams.get(code).push(lane ? lane.grams : null);
    }
    if (c.times.length > 900) { c.times.shift(); for (const g of c.grams.values()) g.shift(); }
    c.chart.setData([c.times, ...c.lanes.map((k) => c.grams.get(k))]);
    return renderWeights(c, d);
  } else if (kind === "door") { c.doors.push(d); c.chart.redraw(); }
  else if (kind === "order") c.orders.set(d.id, d);
  else if (kind === "command") c.commands.set(d.cmd_id, d);
  else if (kind === "alert") { if (d.resolved_at) c.alerts.delete(d.id); else c.alerts.set(d.id, d); }
  renderCabinet(c);
}

function makeChart(c) {
  if (c.chart) c.chart.destroy();
  for (const code of c.lanes) if (!c.grams.has(code)) c.grams.set(code, c.times.map(() => null));
  const box = $("#chart");
  const doorLines = (u) => {
    const ctx = u.ctx;
    ctx.save();
    for (const d of c.doors) {
      const x = u.valToPos(d.at_ms / 1000, "x", true);
      ctx.strokeStyle = d.opened ? "#c9372c" : "#1a9e5a";
      ctx.setLineDash([4, 4]);
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    }
    ctx.restore();
  };
  c.chart = new uPlot(
    {
      width: Math.max(300, box.clientWidth || 600), height: 280,
      series: [{}, ...c.lanes.map((code, i) => ({ label: code, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true }))],
      axes: [{}, { label: "g" }],
      hooks: { draw: [doorLines] },
    },
    [c.times, ...c.lanes.map((k) => c.grams.get(k))],
    box,
  );
}

function renderWeights(c, d) {
  for (const l of d.lanes) {
    const cell = document.querySelector(`#lanes [data-grams="${CSS.escape(l.code)}"]`);
    if (cell) cell.textContent = l.grams == null ? "–" : l.grams.toFixed(1);
  }
}

/// "σ 2.1 · drift +3.0" for a lane's cell today, from `lane_health`.
function noiseOf(c, code) {
  const h = c.health.get(code);
  if (!h || h.noise_g == null) return "–";
  const drift = h.drift_g ? ` · ${h.drift_g > 0 ? "+" : ""}${h.drift_g.toFixed(1)}` : "";
  return `σ ${h.noise_g.toFixed(1)}${drift}`;
}

function renderCabinet(c) {
  const cab = c.snap.cabinet;
  $("#cabinet-state").innerHTML = `<i class="dot ${stateOf(cab)}"></i>${esc(t("liveness." + cab.liveness))} · ${esc(t("status." + cab.status))}` +
    (cab.doors_open.length ? " · " + cab.doors_open.map((d) => esc(t("door.open", { d }))).join(", ") : "") +
    (cab.temperature_c != null ? ` · ${cab.temperature_c} °C` : "");
  $("#session").textContent = cab.session ? `${t("kind." + cab.session.kind)} #${cab.session.id} · ${time(cab.session.started_at)}` : t("cabinet.free");
  const cal = c.snap.lanes.filter((l) => l.calibrated).length;
  $("#setup").textContent = `${t(cab.configured ? "cabinet.configured" : "cabinet.not_configured")} · ${t("cabinet.calibrated", { n: cal, total: c.snap.lanes.length })}`;
  const closed = c.snap.closed_g || {};
  $("#lanes").innerHTML = `<tr><th>${t("lane.code")}</th><th>${t("lane.product")}</th><th>${t("lane.stock")}</th><th>${t("lane.threshold")}</th><th>${t("lane.grams")}</th><th>${t("lane.noise")}</th><th>${t("lane.calibrated")}</th></tr>` +
    c.snap.lanes.map((l) => `<tr class="${l.stock <= l.threshold ? "low" : ""}"><td>${esc(l.code)}</td><td>${esc(l.product ? l.product.name : "–")}</td>
      <td>${l.stock} / ${l.capacity}</td><td>${l.threshold}</td><td data-grams="${esc(l.code)}">${closed[l.code] ?? "–"}</td><td data-noise="${esc(l.code)}">${noiseOf(c, l.code)}</td><td>${l.calibrated ? "✓" : "✗"}</td></tr>`).join("");
  $("#commands").innerHTML = [...c.commands.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1)).slice(0, 20)
    .map((x) => `<li>${esc(x.kind)} · <span class="badge">${esc(x.status)}</span> · ${time(x.created_at)}</li>`).join("");
  $("#events").innerHTML = c.snap.events.map((e) => `<li>${esc(e.kind)} ${esc(e.from_state || "")}→${esc(e.to_state || "")} · ${time(e.created_at)}</li>`).join("") +
    c.doors.slice(-10).reverse().map((d) => `<li>${esc(t(d.opened ? "door.open" : "door.closed", { d: d.door }))} · ${new Date(d.at_ms).toLocaleTimeString()}</li>`).join("");
  $("#cabinet-alerts").innerHTML = [...c.alerts.values()].map((a) => `<li>${esc(a.code)}: ${esc(a.message)}</li>`).join("");
  $("#cabinet-orders").innerHTML = [...c.orders.values()].sort((a, b) => b.id - a.id).slice(0, 20)
    .map((o) => `<li>#${o.id} · <span class="badge" data-order-status="${esc(o.status)}">${esc(o.status)}</span> · ${yuan(o.total_fen)}</li>`).join("");
  $("#btn-end").disabled = !cab.session;
}

async function cabinetAction(what) {
  const c = app.cabinet;
  const sn = encodeURIComponent(c.sn);
  const door = (c.snap.lanes[0] || { door: 1 }).door;
  const calls = {
    labels: () => api("POST", `/ops/cabinets/${sn}/price-tags`),
    restock: () => api("POST", `/ops/cabinets/${sn}/restock`, { door }),
    maintenance: () => api("POST", `/ops/cabinets/${sn}/maintenance`, { door }),
    end: () => api("DELETE", `/ops/cabinets/${sn}/session`),
  };
  try {
    await calls[what]();
    $("#action-result").textContent = t("act.done", { what: t("act." + what) });
  } catch (e) {
    $("#action-result").textContent = t("act.failed", { why: e.message });
  }
}

// ---------- orders ----------

function renderOrders() {
  const rows = [...app.orders.values()].sort((a, b) => b.id - a.id).slice(0, 200);
  $("#orders").innerHTML = `<tr><th>#</th><th>${t("order.cabinet")}</th><th>${t("order.status")}</th><th>${t("order.total")}</th><th>${t("order.time")}</th></tr>` +
    rows.map((o) => `<tr data-id="${o.id}" data-order="${o.id}"><td>${o.id}</td><td>${esc(o.sn)}</td><td><span class="badge">${esc(o.status)}</span></td><td>${yuan(o.total_fen)}</td><td>${time(o.updated_at)}</td></tr>`).join("");
}

async function showOrder(id) {
  const d = await api("GET", `/ops/orders/${id}`);
  const o = d.order;
  $("#order-detail").innerHTML = `<h3>#${o.id} · ${esc(o.sn)} · <span class="badge">${esc(o.status)}</span></h3>
    <p>${t("order.no")}: ${esc(o.out_order_no)} · ${t("order.total")} ${yuan(o.total_fen)} · ${t("order.paid")} ${yuan(o.paid_fen)}</p>
    <h3>${t("order.lines")}</h3>${linesTable(o.lines)}
    ${o.refunds.length ? `<h3>${t("order.refunds")}</h3><ul class="list">${o.refunds.map((r) => `<li>${yuan(r.amount_fen)} · ${esc(r.status)}</li>`).join("")}</ul>` : ""}
    <h3>${t("order.trace")}</h3><div id="order-trace"></div>`;
  traceChart($("#order-trace"), d.trace);
}

function linesTable(lines) {
  return `<table>${lines.map((l) => `<tr><td>${esc(l.lane)}</td><td>${esc(l.product_name)}</td><td>× ${l.qty}</td><td>${yuan(l.amount_fen)}</td></tr>`).join("")}</table>`;
}

/// A session's weight trace: each lane's grams over time; the readings taken with the door open
/// are shaded.
function traceChart(box, trace) {
  const rows = trace.filter((r) => r.grams);
  if (!rows.length) return (box.textContent = "–");
  const parsed = rows.map((r) => ({ at: new Date(r.recorded_at + "Z").getTime() / 1000, kind: r.kind, g: JSON.parse(r.grams) }));
  const lanes = [...new Set(parsed.flatMap((p) => Object.keys(p.g)))].sort();
  const open = parsed.filter((p) => p.kind === "open").map((p) => p.at);
  const shade = (u) => {
    if (!open.length) return;
    const x0 = u.valToPos(Math.min(...open), "x", true), x1 = u.valToPos(Math.max(...open), "x", true);
    u.ctx.save(); u.ctx.fillStyle = "rgba(201,55,44,0.08)"; u.ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height); u.ctx.restore();
  };
  new uPlot(
    {
      width: Math.max(300, box.clientWidth || 500), height: 240,
      series: [{}, ...lanes.map((code, i) => ({ label: code, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true }))],
      axes: [{}, { label: "g" }],
      hooks: { drawClear: [shade] },
    },
    [parsed.map((p) => p.at), ...lanes.map((code) => parsed.map((p) => p.g[code] ?? null))],
    box,
  );
}

// ---------- reviews ----------

function renderReviews() {
  const rows = [...app.reviews.values()].sort((a, b) => a.id - b.id);
  $("#reviews").innerHTML = `<tr><th>#</th><th>${t("review.kind")}</th><th>${t("order.time")}</th></tr>` +
    rows.map((r) => `<tr data-id="${r.id}" data-review="${r.id}"><td>${r.id}</td><td>${esc(r.kind)}</td><td>${time(r.created_at)}</td></tr>`).join("");
}

async function showReview(id) {
  const d = await api("GET", `/ops/reviews/${id}`);
  const o = d.order;
  const lanes = [...new Set(d.trace.filter((r) => r.grams).flatMap((r) => Object.keys(JSON.parse(r.grams))))].sort();
  const qty = (lane) => (o.lines.find((l) => l.lane === lane) || { qty: 0 }).qty;
  $("#review-detail").innerHTML = `<h3>#${d.case.id} · ${esc(d.case.kind)} · ${t("order.cabinet")} ${esc(o.sn)} · <span class="badge">${esc(o.status)}</span></h3>
    <p>${t("review.reasons")}: <code>${esc(JSON.stringify(d.case.reasons))}</code></p>
    <h3>${t("order.trace")}</h3><div id="review-trace"></div>
    <h3>${t("order.lines")}</h3>
    <table>${lanes.map((l) => `<tr><td>${esc(l)}</td><td><input class="qty" type="number" min="0" value="${qty(l)}" data-lane="${esc(l)}"></td></tr>`).join("")}</table>
    <label>${t("review.note")} <input id="review-note"></label>
    <div class="decisions">${["charge", "refund", "dismiss"].map((x) => `<button type="button" data-decision="${x}">${t("decision." + x)}</button>`).join("")}</div>
    <p id="review-result" class="muted"></p>`;
  traceChart($("#review-trace"), d.trace);
  for (const b of document.querySelectorAll("[data-decision]")) {
    b.onclick = async () => {
      const lines = [...document.querySelectorAll("#review-detail [data-lane]")].map((i) => ({ lane: i.dataset.lane, qty: Number(i.value) })).filter((l) => l.qty > 0);
      try {
        await api("POST", `/ops/reviews/${id}/resolve`, { decision: b.dataset.decision, lines, note: $("#review-note").value });
        $("#review-result").textContent = t("review.resolved");
      } catch (e) {
        $("#review-result").textContent = t("act.failed", { why: e.message });
      }
    };
  }
}

// ---------- alerts and restock ----------

function renderAlerts() {
  const rows = [...app.alerts.values()].sort((a, b) => b.id - a.id);
  $("#alerts").innerHTML = `<tr><th>${t("alerts.code")}</th><th>${t("alerts.cabinet")}</th><th>${t("alerts.message")}</th><th>${t("alerts.count")}</th><th>${t("alerts.since")}</th></tr>` +
    rows.map((a) => `<tr data-alert="${a.id}"><td><span class="badge">${esc(a.code)}</span></td><td>${esc(a.sn || "")}</td><td>${esc(a.message)}</td><td>${a.occurrences}</td><td>${time(a.created_at)}</td></tr>`).join("");
}

function renderTasks() {
  const rows = [...app.tasks.values()].sort((a, b) => b.id - a.id);
  const wanted = (w) => { try { return JSON.parse(w).map((l) => `${l.lane} +${l.qty}`).join(", "); } catch { return w; } };
  $("#restock").innerHTML = `<tr><th>${t("restock.task")}</th><th>${t("alerts.cabinet")}</th><th>${t("restock.status")}</th><th>${t("restock.wanted")}</th><th>${t("restock.since")}</th></tr>` +
    rows.map((x) => `<tr data-task="${x.id}"><td>#${x.id}</td><td>${esc(x.sn)}</td><td><span class="badge">${esc(x.status)}</span></td><td>${esc(wanted(x.wanted))}</td><td>${time(x.created_at)}</td></tr>`).join("");
}

// ---------- money: the nightly reconciliation and the daily settlement ----------

/// Today in Beijing, `YYYY-MM-DD`: business days are Asia/Shanghai.
const beijingDay = (offsetDays = 0) => new Date(Date.now() + 8 * 3600e3 + offsetDays * 86400e3).toISOString().slice(0, 10);

async function showMoney() {
  const dayInput = $("#money-day");
  if (!dayInput.value) dayInput.value = beijingDay();
  const day = dayInput.value;
  const from = new Date(Date.parse(day + "T00:00:00Z") - 13 * 86400e3).toISOString().slice(0, 10);
  const [daily, cases, lanes] = await Promise.all([
    api("GET", `/ops/reports/daily?from=${from}&to=${day}`),
    api("GET", "/ops/bill-cases?status=open"),
    api("GET", `/ops/stocktake?day=${day}`),
  ]);
  app.money = { ...(app.money || {}), day, daily, cases: cases.cases || [], lanes };
  renderMoney();
}

function renderMoney() {
  const m = app.money;
  if (!m || app.view !== "money") return;
  const sum = (rows, k) => rows.reduce((n, r) => n + (r[k] || 0), 0);
  const dayRows = m.daily.rows.filter((r) => r.day === m.day);
  const totals = m.daily.totals;
  const gross = sum(totals, "gross_fen"), orders = sum(totals, "orders");
  const pct = (a, b) => (b ? ((100 * a) / b).toFixed(2) + "%" : "–");
  const figures = [
    ["gross", yuan(gross)], ["net", yuan(sum(totals, "net_fen"))], ["fees", yuan(sum(totals, "fees_fen"))],
    ["debt", yuan(sum(totals, "debt_opened_fen"))], ["loss_rate", pct(sum(totals, "loss_fen"), gross)],
    ["review_rate", pct(sum(totals, "reviews"), orders)], ["units", (sum(totals, "units_sold") / Math.max(totals.length, 1)).toFixed(1)],
    // The day's units sold against the stock its lanes held that night (the stocktake's book).
    ["turnover", pct(sum(dayRows, "units_sold"), sum(m.lanes, "book"))],
  ];
  $("#money-figures").innerHTML = figures.map(([k, v]) => `<span data-figure="${k}"><span>${t("money." + k)}</span> <b>${esc(v)}</b></span>`).join("");
  const days = totals.map((d) => d.day);
  // Bars per day: a day on its own still shows, and the money side by side reads at a glance.
  const line = (k, f) => ({ name: t("money." + k), type: "bar", data: totals.map((d) => (d[f] || 0) / 100) });
  app.money.chart = app.money.chart || echarts.init($("#money-chart"));
  app.money.chart.setOption({
    animation: false, tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 50, right: 10, top: 40, bottom: 30 },
    xAxis: { type: "category", data: days }, yAxis: { type: "value" },
    series: [line("gross", "gross_fen"), line("net", "net_fen"), line("fees", "fees_fen"), line("refunds", "refunds_fen"), line("debt", "debt_opened_fen"), line("loss", "loss_fen")],
  }, true);
  const top = (key) => {
    const by = new Map();
    for (const r of dayRows) by.set(r[key], (by.get(r[key]) || 0) + r.gross_fen);
    return [...by.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5);
  };
  const cabinets = top("sn"), products = top("product_name");
  app.money.top = app.money.top || echarts.init($("#money-top"));
  app.money.top.setOption({
    animation: false, tooltip: {}, grid: [{ left: 90, right: "55%", bottom: 20 }, { left: "70%", right: 10, bottom: 20 }],
    xAxis: [{ type: "value", gridIndex: 0 }, { type: "value", gridIndex: 1 }],
    yAxis: [{ type: "category", gridIndex: 0, data: cabinets.map((c) => c[0]) }, { type: "category", gridIndex: 1, data: products.map((p) => p[0]) }],
    series: [
      { type: "bar", xAxisIndex: 0, yAxisIndex: 0, data: cabinets.map((c) => c[1] / 100) },
      { type: "bar", xAxisIndex: 1, yAxisIndex: 1, data: products.map((p) => p[1] / 100) },
    ],
  }, true);
  $("#bill-cases").innerHTML = m.cases.length === 0 ? `<tr><td class="muted">${t("money.none")}</td></tr>` :
    `<tr><th>#</th><th>${t("review.kind")}</th><th>${t("order.no")}</th><th>Heft</th><th>Bill</th><th></th></tr>` +
    m.cases.map((c) => `<tr data-case="${c.id}"><td>${c.id}</td><td><span class="badge">${esc(c.channel)} ${esc(c.kind)}</span> ${esc(c.day)}</td><td>${esc(c.out_order_no)}</td><td>${yuan(c.heft_fen)}</td><td>${yuan(c.bill_fen)}</td>` +
      `<td><select data-resolution><option>accept</option><option>correct</option><option>write_off</option></select> <input data-note placeholder="${t("money.note")}"> <button data-resolve="${c.id}">${t("money.resolve")}</button></td></tr>`).join("");
  const differing = m.lanes.filter((l) => l.status !== "agrees");
  $("#stocktake").innerHTML = differing.length === 0 ? `<tr><td class="muted">${t("money.none")}</td></tr>` :
    `<tr><th>${t("alerts.cabinet")}</th><th>${t("lane.code")}</th><th>${t("lane.stock")}</th><th></th></tr>` +
    differing.map((l) => `<tr data-stock="${esc(l.sn)}/${esc(l.lane)}"><td>${esc(l.sn)}</td><td>${esc(l.lane)}</td><td>${l.book} → ${l.implied ?? "?"}</td><td>${esc(l.unreadable || "")} ` +
      l.findings.map((f) => `<span class="badge">${esc(f.kind)} ${f.units} · ${yuan(f.value_fen)}${f.order_id ? " #" + f.order_id : ""}</span>`).join(" ") + `</td></tr>`).join("");
}

async function resolveCase(button) {
  const row = button.closest("tr");
  try {
    await api("POST", `/ops/bill-cases/${button.dataset.resolve}/resolve`, {
      resolution: row.querySelector("[data-resolution]").value, note: row.querySelector("[data-note]").value,
    });
    $("#case-result").textContent = t("money.resolved");
    await showMoney();
  } catch (e) {
    $("#case-result").textContent = t("act.failed").replace("{why}", e.message);
  }
}

// ---------- wiring ----------

function rerender() {
  applyI18n();
  if (!app.operator) return;
  renderCounts(); renderFleet(); renderOrders(); renderReviews(); renderAlerts(); renderTasks(); renderMoney();
  if (app.cabinet && app.cabinet.snap) renderCabinet(app.cabinet);
}

document.addEventListener("DOMContentLoaded", () => {
  applyI18n();
  $("#login").addEventListener("submit", signIn);
  $("#lang").addEventListener("click", () => { switchLanguage(); rerender(); });
  $("#signout").addEventListener("click", signOut);
  $("#back").addEventListener("click", () => show("fleet"));
  for (const b of document.querySelectorAll("#nav button")) b.addEventListener("click", () => show(b.dataset.view));
  $("#fleet-scroll").addEventListener("scroll", () => requestAnimationFrame(renderVisibleRows));
  $("#fleet-scroll").addEventListener("click", (e) => { const r = e.target.closest("[data-sn]"); if (r) show("cabinet/" + encodeURIComponent(r.dataset.sn)); });
  $("#fleet-head").addEventListener("click", (e) => {
    const k = e.target.closest("[data-sort]");
    if (!k) return;
    app.sort = { key: k.dataset.sort, dir: app.sort.key === k.dataset.sort ? -app.sort.dir : 1 };
    renderFleet();
  });
  $("#fleet-filter").addEventListener("input", () => requestAnimationFrame(renderFleet));
  $("#fleet-liveness").addEventListener("change", () => requestAnimationFrame(renderFleet));
  $("#orders").addEventListener("click", (e) => { const r = e.target.closest("[data-order]"); if (r) showOrder(r.dataset.order); });
  $("#reviews").addEventListener("click", (e) => { const r = e.target.closest("[data-review]"); if (r) showReview(r.dataset.review); });
  $("#bill-cases").addEventListener("click", (e) => { const b = e.target.closest("[data-resolve]"); if (b) resolveCase(b); });
  $("#money-day").addEventListener("change", () => showMoney());
  for (const what of ["labels", "restock", "maintenance", "end"]) $(`#btn-${what === "end" ? "end" : what}`).addEventListener("click", () => cabinetAction(what));
  window.addEventListener("resize", () => { if (app.map) app.map.resize(); if (app.money && app.money.chart) { app.money.chart.resize(); app.money.top.resize(); } });
  if (app.token && app.operator) start();
});
