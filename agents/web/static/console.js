// Warden console: live alert feed (server-sent events), city map, alert view and lifecycle actions.
// Every string that came from a record is put in the page with textContent or setAttribute, never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { who: null, csrf: null, alerts: new Map(), selected: null, project: null, departments: [],
                lastRecords: null, lastAt: 0, source: null, words: null, language: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = null, ns = null) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = String(text);
  return node;
}

async function call(method, url, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const resp = await fetch(url, { method, headers, credentials: "same-origin",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
  let doc = {};
  try { doc = await resp.json(); } catch (e) { doc = {}; }
  if (!resp.ok) throw new Error(doc.error || `${resp.status} ${resp.statusText}`);
  return doc;
}

// -- words: the session's language (zh-CN by default, en), from the server --------------------------------

function t(key, values = {}) {
  const word = (state.words && state.words.ui[key]) || key;
  return word.replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
}
function term(section, key) { return (state.words && state.words[section][key]) || key; }

function applyWords() {
  document.documentElement.lang = state.language;
  document.title = t("app");
  for (const node of document.querySelectorAll("[data-ui]")) node.textContent = t(node.dataset.ui);
  for (const node of document.querySelectorAll("[data-ui-label]")) node.setAttribute("aria-label", t(node.dataset.uiLabel));
  for (const button of document.querySelectorAll(".actions button")) button.textContent = term("actions", button.dataset.action);
  for (const [id, section] of [["filter-severity", "severity"], ["filter-status", "status"]]) {
    const select = $(id);
    for (const [key, word] of Object.entries(state.words[section])) select.appendChild(el("option", { value: key }, word));
  }
}

function tickClock() {
  // Swedish dates are ISO-ordered: the same "YYYY-MM-DD hh:mm:ss" as every time the server writes.
  const now = new Date().toLocaleString("sv-SE", { timeZone: state.timezone });
  $("clock").textContent = `${t("time_zone")} ${now} (${state.utcOffset})`;
}

// -- login ------------------------------------------------------------------------------------

async function start() {
  try {
    const session = await call("GET", "/console/session");
    enter(session);
  } catch (e) {
    $("login").hidden = false;
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const body = { name: $("login-name").value, token: $("login-token").value };
    if ($("login-language").value) body.language = $("login-language").value;
    const session = await call("POST", "/console/login", body);
    $("login-token").value = "";
    enter(session);
  } catch (e) {
    $("login-error").textContent = e.message;
  }
});

$("logout").addEventListener("click", async () => {
  try { await call("POST", "/console/logout", {}); } finally { location.reload(); }
});

$("language").addEventListener("click", async () => {
  try {
    await call("POST", "/console/language", { language: state.language === "zh-CN" ? "en" : "zh-CN" });
  } finally { location.reload(); }
});

function enter(session) {
  state.who = session.who;
  state.csrf = session.csrf;
  state.words = session.words;
  state.language = session.language;
  state.timezone = session.timezone;
  state.utcOffset = session.utc_offset;
  applyWords();
  tickClock();
  setInterval(tickClock, 1000);
  $("who").textContent = session.who;
  $("role").textContent = session.role;
  const viewer = session.role === "viewer";
  $("viewer-note").hidden = !viewer;
  for (const control of document.querySelectorAll(".actions button, .actions select")) control.hidden = viewer;
  $("login").hidden = true;
  $("console").hidden = false;
  loadMap().then(connectFeed);
  refreshStatus();
  setInterval(refreshStatus, 2000);
}

// -- map --------------------------------------------------------------------------------------

function rings(geometry) {
  if (!geometry) return [];
  const c = geometry.coordinates;
  switch (geometry.type) {
    case "Polygon": return c;
    case "MultiPolygon": return c.flat();
    case "LineString": return [c];
    case "MultiLineString": return c;
    default: return [];
  }
}

function features(collection) { return (collection && collection.features) || []; }

async function loadMap() {
  const map = await call("GET", "/console/map");
  state.departments = map.departments;
  const select = $("dispatch-to");
  select.replaceChildren(...map.departments.map((d) => el("option", { value: d }, term("departments", d))));
  const points = [];
  for (const f of [...features(map.areas), ...features(map.zones), ...features(map.routes)]) {
    for (const ring of rings(f.geometry)) points.push(...ring);
  }
  for (const s of map.sites) points.push([s.lon, s.lat]);
  if (!points.length) { state.project = null; return; }
  const lons = points.map((p) => p[0]), lats = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const scale = Math.min(960 / Math.max((x1 - x0) * k, 1e-9), 760 / Math.max(y1 - y0, 1e-9));
  state.project = (lon, lat) => [20 + (lon - x0) * k * scale, 780 - (lat - y0) * scale];
  const svg = $("map");
  svg.replaceChildren();
  const layer = (name) => { const g = el("g", { class: `layer-${name}` }, null, SVG); svg.appendChild(g); return g; };
  const path = (geometry, closed) => rings(geometry).map((ring) =>
    "M" + ring.map(([lon, lat]) => state.project(lon, lat).map((v) => v.toFixed(1)).join(",")).join("L") + (closed ? "Z" : "")).join("");
  const areas = layer("areas"), zones = layer("zones"), routes = layer("routes"), sites = layer("sites");
  for (const f of features(map.areas)) {
    const level = (f.properties && f.properties.level) || "";
    const p = el("path", { d: path(f.geometry, true), class: `area ${level}` }, null, SVG);
    p.appendChild(el("title", {}, `${level} ${(f.properties && f.properties.name) || ""}`, SVG));
    areas.appendChild(p);
  }
  for (const f of features(map.zones)) {
    const p = el("path", { d: path(f.geometry, true), class: "zone" }, null, SVG);
    p.appendChild(el("title", {}, `zone ${(f.properties && (f.properties.name || f.properties.id)) || ""}`, SVG));
    zones.appendChild(p);
  }
  for (const f of features(map.routes)) {
    const p = el("path", { d: path(f.geometry, false), class: "route" }, null, SVG);
    p.appendChild(el("title", {}, `route ${(f.properties && (f.properties.name || f.properties.id)) || ""}`, SVG));
    routes.appendChild(p);
  }
  for (const s of map.sites) {
    const [x, y] = state.project(s.lon, s.lat);
    const r = el("rect", { x: x - 2.5, y: y - 2.5, width: 5, height: 5, class: `site ${s.status}` }, null, SVG);
    r.appendChild(el("title", {}, `${s.name || s.id} (${s.category}, ${s.status})`, SVG));
    sites.appendChild(r);
  }
  layer("vehicles");
  layer("alerts");
}

function drawAlertMarkers() {
  const g = document.querySelector("#map .layer-alerts");
  if (!g || !state.project) return;
  g.replaceChildren();
  for (const a of visibleAlerts()) {
    if (!a.location) continue;
    const [x, y] = state.project(a.location.lon, a.location.lat);
    const c = el("circle", { cx: x, cy: y, r: a.id === state.selected ? 8 : 5, class: `alert sev-${a.severity}`,
                             "data-id": a.id }, null, SVG);
    c.appendChild(el("title", {}, `${a.display.title}: ${a.entity}`, SVG));
    c.addEventListener("click", () => openAlert(a.id));
    g.appendChild(c);
  }
}

function drawVehicles(vehicles) {
  const g = document.querySelector("#map .layer-vehicles");
  if (!g || !state.project) return;
  g.replaceChildren(...vehicles.slice(0, 5000).map((v) => {
    const [x, y] = state.project(v.lon, v.lat);
    const c = el("circle", { cx: x, cy: y, r: 2, class: "vehicle" }, null, SVG);
    c.appendChild(el("title", {}, v.entity, SVG));
    return c;
  }));
}

// -- header counters ----------------------------------------------------------------------------

async function refreshStatus() {
  let st;
  try { st = await call("GET", "/console/status"); } catch (e) { return; }
  $("count-open").textContent = st.alerts.open;
  $("count-acknowledged").textContent = st.alerts.acknowledged;
  $("count-dispatched").textContent = st.alerts.dispatched;
  $("count-dead").textContent = st.dead_letters;
  const now = Date.now() / 1000;
  if (state.lastRecords) {
    const dt = Math.max(now - state.lastAt, 1e-3);
    const parts = Object.entries(st.records).sort().map(([src, n]) =>
      `${src} ${Math.max(0, Math.round((n - (state.lastRecords[src] || 0)) / dt))}/s`);
    $("rates").textContent = parts.join("  ");
  }
  state.lastRecords = st.records;
  state.lastAt = now;
  drawVehicles(st.vehicles);
}

// -- the feed -----------------------------------------------------------------------------------

function connectFeed() {
  const source = new EventSource("/console/events");
  state.source = source;
  source.onopen = () => { $("feed-state").textContent = t("live"); $("feed-state").className = "feed-state live"; };
  source.onerror = () => { $("feed-state").textContent = t("reconnecting"); $("feed-state").className = "feed-state"; };
  source.onmessage = (event) => {
    let alert;
    try { alert = JSON.parse(event.data); } catch (e) { return; }
    const known = state.alerts.get(alert.id);
    state.alerts.set(alert.id, known ? { ...known, ...alert } : alert);
    addOption("filter-kind", alert.kind, alert.display.title);
    const area = areaName(alert);
    if (area) addOption("filter-area", area, area);
    renderFeed();
    if (state.selected === alert.id) openAlert(alert.id);
  };
}

function areaName(a) { return (a.area && (a.area.town || a.area.county || a.area.city)) || ""; }

function addOption(id, value, label) {
  const select = $(id);
  if ([...select.options].some((o) => o.value === value)) return;
  select.appendChild(el("option", { value }, label));
}

function visibleAlerts() {
  const kind = $("filter-kind").value, area = $("filter-area").value;
  const severity = $("filter-severity").value, status = $("filter-status").value;
  return [...state.alerts.values()]
    .filter((a) => (!kind || a.kind === kind) && (!area || areaName(a) === area)
                && (!severity || a.severity === severity) && (!status || a.status === status))
    .sort((a, b) => (b.last_seen || b.ts).localeCompare(a.last_seen || a.ts));
}

function renderFeed() {
  const items = visibleAlerts().slice(0, 500).map((a) => {
    const li = el("li", { class: `sev-${a.severity}${a.id === state.selected ? " selected" : ""}`, "data-id": a.id });
    const d = a.display;
    const kind = el("div", { class: "kind" });
    if (a.escalation) kind.appendChild(el("span", { class: "badge" }, `${t("escalated_badge")} ${term("words", a.escalation.to)}`));
    kind.appendChild(document.createTextNode(`${d.title} - ${a.entity}`));
    li.appendChild(kind);
    li.appendChild(el("div", { class: "meta" },
      `${d.severity} | ${d.status} | ${areaName(a) || t("no_area")} | ${t("times", { n: a.count })} | ${d.last_seen || d.ts}`));
    li.addEventListener("click", () => openAlert(a.id));
    return li;
  });
  $("feed").replaceChildren(...items);
  drawAlertMarkers();
}

for (const id of ["filter-kind", "filter-area", "filter-severity", "filter-status"]) {
  $(id).addEventListener("change", renderFeed);
}

// -- one alert ----------------------------------------------------------------------------------

function fields(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    dl.appendChild(el("dt", {}, t(k)));
    dl.appendChild(el("dd", {}, typeof v === "object" ? JSON.stringify(v) : v));
  }
}

function refuse(message) {
  $("action-error").textContent = message;
  $("action-refusal").hidden = !message;
}

$("action-dismiss").addEventListener("click", () => refuse(""));

function lines(dl, pairs) {
  dl.replaceChildren();
  for (const [label, text] of pairs) {
    dl.appendChild(el("dt", {}, label));
    dl.appendChild(el("dd", {}, text));
  }
}

// The departments the alert was routed to come first, preselected and marked; a choice the officer made
// on this alert stays while it updates.
function fillDispatch(a) {
  const select = $("dispatch-to"), routed = a.departments || [];
  const keep = select.dataset.alert === a.id ? select.value : null;
  const rest = state.departments.filter((d) => !routed.includes(d));
  select.replaceChildren(...routed.map((d) => el("option", { value: d }, term("departments", d) + t("routed"))),
                         ...rest.map((d) => el("option", { value: d }, term("departments", d))));
  select.value = keep || routed[0] || rest[0] || "";
  select.dataset.alert = a.id;
}

// The steps the alert's status does not allow are disabled, the reason on hover.
function guideActions(a) {
  for (const button of document.querySelectorAll(".actions button")) {
    const reason = a.display.steps[button.dataset.action];
    button.disabled = Boolean(reason);
    if (reason) button.title = reason; else button.removeAttribute("title");
  }
  $("dispatch-to").disabled = Boolean(a.display.steps.dispatch);
}

async function openAlert(id) {
  if (state.selected !== id) refuse("");  // a refusal stays until dismissed, or another alert is opened
  state.selected = id;
  renderFeed();
  let a;
  try { a = await call("GET", `/api/alerts/${encodeURIComponent(id)}`); } catch (e) {
    refuse(e.message); return;
  }
  if (state.selected !== id) return;
  state.alerts.set(id, { ...(state.alerts.get(id) || {}), ...a });
  const d = a.display;
  $("detail").hidden = false;
  $("detail-title").textContent = `${d.title}: ${a.entity}`;
  $("detail-description").textContent = d.description;
  $("detail-status").textContent = `${d.status} | ${t("severity")} ${d.severity}`;
  $("detail-status").className = `sev-${a.severity}`;
  $("detail-escalation").hidden = !d.escalation;
  $("detail-escalation").textContent = d.escalation || "";
  const reopen = (d.history || []).filter((h) => h.signal).pop();
  $("detail-reopened").hidden = !(a.reopened && reopen);
  if (reopen) {
    $("reopened-at").textContent = t("signal_at", { at: reopen.at });
    lines($("reopened-evidence"), reopen.signal);
  }
  fields($("detail-fields"), [
    ["id", a.id], ["source", a.source], ["first_seen", d.first_seen], ["last_seen", d.last_seen],
    ["signals", a.count], ["score", a.score], ["model", a.model], ["model_version", a.model_version],
    ["acknowledge_by", d.deadlines && d.deadlines.acknowledge_by], ["resolve_by", d.deadlines && d.deadlines.resolve_by],
    ["area", d.area], ["departments", d.departments.join(", ")],
    ["proposed_action", a.action && [term("departments", a.action.department), d.action, a.action.unit_name || a.action.unit].filter(Boolean).join(": ")],
    ["dispatched_to", a.dispatched_to && term("departments", a.dispatched_to)]]);
  lines($("detail-evidence"), d.evidence);
  $("detail-history").replaceChildren(...(d.history || []).map((h) => {
    const li = el("li", {}, `${h.at} ${h.by}: ${h.action} (${h.from} → ${h.to})${h.department ? " " + h.department : ""}${h.note ? " - " + h.note : ""}`);
    if (h.signal) { const dl = el("dl", { class: "signal" }); lines(dl, h.signal); li.appendChild(dl); }
    return li;
  }));
  fillDispatch(a);
  guideActions(a);
  drawChart(a);
}

$("detail-close").addEventListener("click", () => { state.selected = null; $("detail").hidden = true; refuse(""); renderFeed(); });

async function drawChart(a) {
  const svg = $("chart");
  svg.replaceChildren();
  $("chart-note").textContent = "";
  const ts = Date.parse(a.ts) / 1000;
  const field = a.evidence && typeof a.evidence.field === "string" ? `&field=${encodeURIComponent(a.evidence.field)}` : "";
  let data;
  try {
    data = await call("GET", `/console/readings?source=${encodeURIComponent(a.source)}&entity=${encodeURIComponent(a.entity)}&ts=${ts}${field}`);
  } catch (e) { $("chart-note").textContent = e.message; return; }
  if (state.selected !== a.id) return;
  const pts = data.points;
  if (!pts.length) { $("chart-note").textContent = t("no_readings"); return; }
  const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
  const vs = pts.map((p) => p[1]);
  const v0 = Math.min(...vs), v1 = Math.max(Math.max(...vs), v0 + 1e-9);
  const x = (t) => 30 + (t - t0) / (t1 - t0) * 280, y = (v) => 105 - (v - v0) / (v1 - v0) * 90;
  svg.appendChild(el("polyline", { points: pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }, null, SVG));
  if (ts >= t0 && ts <= t1) svg.appendChild(el("line", { x1: x(ts), x2: x(ts), y1: 10, y2: 110, class: "mark" }, null, SVG));
  svg.appendChild(el("text", { x: 2, y: 15 }, v1.toPrecision(4), SVG));
  svg.appendChild(el("text", { x: 2, y: 108 }, v0.toPrecision(4), SVG));
  $("chart-note").textContent = t("chart_note", { field: term("fields", data.field), unit: data.unit ? ` (${data.unit})` : "", n: pts.length });
}

for (const button of document.querySelectorAll(".actions button")) {
  button.addEventListener("click", async () => {
    const id = state.selected;
    if (!id) return;
    const action = button.dataset.action;
    const body = { note: "" };
    if (action === "dispatch") body.department = $("dispatch-to").value;
    try {
      const a = await call("POST", `/api/alerts/${encodeURIComponent(id)}/${action}`, body);
      refuse("");
      state.alerts.set(id, { ...(state.alerts.get(id) || {}), ...a });
      openAlert(id);
    } catch (e) {
      refuse(e.message);
    }
  });
}

start();
