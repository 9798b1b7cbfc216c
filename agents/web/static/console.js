// Warden console: live alert feed (server-sent events), city map, alert view and lifecycle actions.
// Every string that came from a record is put in the page with textContent or setAttribute, never as markup.
"use strict";

const state = { who: null, alerts: new Map(), selected: null, project: null, departments: [],
                lastRecords: null, lastAt: 0, source: null };

// -- words: the session's language (zh-CN by default, en), from the server --------------------------------

function applyWords() {
  document.title = t("app");
  for (const button of document.querySelectorAll(".actions button")) button.textContent = term("actions", button.dataset.action);
  for (const [id, section] of [["filter-severity", "severity"], ["filter-status", "status"]]) {
    const select = $(id);
    for (const [key, word] of Object.entries(session.words[section])) select.appendChild(el("option", { value: key }, word));
  }
}

function tickClock() { $("clock").textContent = `${t("time_zone")} ${localNow()} (${session.utcOffset})`; }

// -- login ------------------------------------------------------------------------------------

async function start() {
  try {
    enter(await call("GET", "/console/session"));
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
    const opened = await call("POST", "/console/login", body);
    $("login-token").value = "";
    enter(opened);
  } catch (e) {
    $("login-error").textContent = e.message;
  }
});

$("logout").addEventListener("click", async () => {
  try { await call("POST", "/console/logout", {}); } finally { location.reload(); }
});

$("language").addEventListener("click", async () => {
  try {
    await call("POST", "/console/language", { language: session.language === "zh-CN" ? "en" : "zh-CN" });
  } finally { location.reload(); }
});

function enter(s) {
  state.who = s.who;
  useSession(s);
  applyWords();
  tickClock();
  setInterval(tickClock, 1000);
  $("who").textContent = s.who;
  $("role").textContent = s.role;
  const viewer = s.role === "viewer";
  $("viewer-note").hidden = !viewer;
  for (const control of document.querySelectorAll(".actions button, .actions select")) control.hidden = viewer;
  $("login").hidden = true;
  $("console").hidden = false;
  loadMap().then(connectFeed);
  refreshStatus();
  setInterval(refreshStatus, 2000);
}

// -- map --------------------------------------------------------------------------------------

async function loadMap() {
  const map = await call("GET", "/console/map");
  state.departments = map.departments;
  const select = $("dispatch-to");
  select.replaceChildren(...map.departments.map((d) => el("option", { value: d }, term("departments", d))));
  const svg = $("map");
  state.project = drawCityMap(svg, map, $("map-message"));
  for (const part of document.querySelectorAll("#map-panel .legend, #map-panel .zoom")) part.hidden = !state.project;
  for (const name of ["vehicles", "alerts"]) svg.appendChild(el("g", { class: `layer-${name}` }, null, SVG));
}

$("zoom-in").addEventListener("click", () => $("map").zoomBy(1.5));
$("zoom-out").addEventListener("click", () => $("map").zoomBy(1 / 1.5));
$("zoom-reset").addEventListener("click", () => $("map").resetZoom());

// An alert is a dot coloured by severity (larger when selected); a grouped incident (one alert for several
// entities) is one ringed marker with its count.
function drawAlertMarkers() {
  const g = document.querySelector("#map .layer-alerts");
  if (!g || !state.project) return;
  g.replaceChildren();
  for (const a of visibleAlerts()) {
    if (!a.location) continue;
    const [x, y] = state.project(a.location.lon, a.location.lat);
    const members = (a.members || []).length;
    const marker = el("g", { class: `alert sev-${a.severity}${members > 1 ? " grouped" : ""}`, "data-id": a.id }, null, SVG);
    marker.appendChild(el("circle", { cx: x, cy: y, r: (a.id === state.selected ? 8 : 5) + (members > 1 ? 3 : 0) }, null, SVG));
    if (members > 1) marker.appendChild(el("text", { x, y: y + 3 }, members, SVG));
    marker.appendChild(el("title", {}, `${a.display.title}: ${a.entity}${members > 1 ? ` (${members})` : ""}`, SVG));
    marker.addEventListener("click", () => openAlert(a.id));
    g.appendChild(marker);
  }
}

// A vehicle is a triangle pointing where it heads (a dot when the heading is unknown); hazardous-goods
// vehicles in orange, their class on hover.
function drawVehicles(vehicles) {
  const g = document.querySelector("#map .layer-vehicles");
  if (!g || !state.project) return;
  g.replaceChildren(...vehicles.slice(0, 5000).map((v) => {
    const [x, y] = state.project(v.lon, v.lat);
    const cls = `vehicle${v.hazard_class ? " hazmat" : ""}`;
    const mark = typeof v.heading === "number"
      ? el("path", { d: "M0,-5L3.5,4L-3.5,4Z", transform: `translate(${x.toFixed(1)},${y.toFixed(1)}) rotate(${v.heading})`, class: cls }, null, SVG)
      : el("circle", { cx: x, cy: y, r: 2, class: cls }, null, SVG);
    mark.appendChild(el("title", {}, v.hazard_class ? `${v.entity} (${t("legend_hazmat")} ${v.hazard_class})` : v.entity, SVG));
    return mark;
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
