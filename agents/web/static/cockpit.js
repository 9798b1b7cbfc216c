// The leaders' cockpit: the city's state at a glance on a 1920x1080 wall screen, refreshed live. Charts are SVG
// drawn here; every string from a record goes in as text.
"use strict";

const cockpit = { project: null, kind: "" };

async function startCockpit() {
  let s;
  try { s = await call("GET", "/console/session"); } catch (e) { $("cockpit-login").hidden = false; return; }
  useSession(s);
  document.title = t("cockpit_title");
  $("cockpit").hidden = false;
  const tick = () => { $("clock").textContent = `${t("time_zone")} ${localNow()}`; };
  tick(); setInterval(tick, 1000);
  const map = await call("GET", "/console/map");
  const svg = $("map");
  cockpit.project = drawCityMap(svg, map, $("map-message"));
  for (const name of ["heat", "advice"]) svg.appendChild(el("g", { class: `layer-${name}` }, null, SVG));
  $("advice-kind").addEventListener("change", () => { cockpit.kind = $("advice-kind").value; refresh(); });
  await refresh();
  setInterval(refresh, 15000);
}

async function refresh() {
  let doc;
  try { doc = await call("GET", `/console/cockpit${cockpit.kind ? "?kind=" + encodeURIComponent(cockpit.kind) : ""}`); }
  catch (e) { return; }
  const s = doc.summary;
  $("kpi-open").textContent = s.open;
  $("kpi-in-hand").textContent = s.in_hand;
  $("kpi-new-today").textContent = s.new_today;
  $("kpi-overdue").textContent = s.overdue;
  $("kpi-closure").textContent = s.closure_rate === null ? "-" : `${(100 * s.closure_rate).toFixed(1)}%`;
  $("kpi-close-time").textContent = doc.close_median;
  drawAreas(s.by_area.slice(0, 10));
  drawDepartments(s.by_department);
  drawTrends(s, doc.titles);
  drawHeat(s.today_points);
  drawAdvice(doc.advice, doc.titles);
  $("report-links").replaceChildren(...doc.reports.filter((r) => r.endsWith(".html")).slice(0, 1).map((r) =>
    el("a", { href: `/console/reports/${encodeURIComponent(r)}`, target: "_blank", rel: "noopener" }, `${t("daily_report")} ${r.slice(7, 17)}`)));
}

function drawAreas(rows) {
  const svg = $("areas-chart"), max = Math.max(1, ...rows.map((r) => r.open + r.today));
  svg.replaceChildren();
  rows.forEach((r, i) => {
    const y = 6 + i * 29, w = (n) => (n / max) * 250;
    svg.appendChild(el("text", { x: 0, y: y + 15 }, r.area || t("no_area"), SVG));
    svg.appendChild(el("rect", { x: 150, y, width: w(r.open), height: 11, class: "open" }, null, SVG));
    svg.appendChild(el("rect", { x: 150, y: y + 12, width: w(r.today), height: 9, class: "today" }, null, SVG));
    svg.appendChild(el("text", { x: 150 + w(Math.max(r.open, r.today)) + 6, y: y + 15 }, `${r.open} / ${r.today}`, SVG));
  });
}

function drawDepartments(rows) {
  $("departments").tBodies[0].replaceChildren(...rows.slice(0, 12).map((r) => {
    const tr = el("tr");
    tr.appendChild(el("td", {}, term("departments", r.department)));
    tr.appendChild(el("td", {}, r.open));
    tr.appendChild(el("td", {}, r.today));
    tr.appendChild(el("td", { class: r.overdue ? "late" : "" }, r.overdue));
    return tr;
  }));
}

function drawTrends(s, titles) {
  $("trends").replaceChildren(...Object.entries(s.trend).map(([kind, counts]) => {
    const box = el("div", { class: "trend" }), name = el("div", { class: "name" });
    name.appendChild(el("span", {}, titles[kind] || kind));
    name.appendChild(el("span", {}, `${counts.reduce((a, b) => a + b, 0)}`));
    box.appendChild(name);
    const svg = el("svg", { viewBox: "0 0 300 50", preserveAspectRatio: "none", role: "img" }, null, SVG);
    const max = Math.max(1, ...counts), x = (i) => (i / Math.max(1, counts.length - 1)) * 296 + 2, y = (n) => 46 - (n / max) * 42;
    svg.appendChild(el("polyline", { points: counts.map((n, i) => `${x(i).toFixed(1)},${y(n).toFixed(1)}`).join(" ") }, null, SVG));
    const last = counts.length - 1;
    svg.appendChild(el("circle", { cx: x(last), cy: y(counts[last]), r: 3, class: "last" }, null, SVG));
    svg.appendChild(el("title", {}, `${s.days[0]} .. ${s.days[last]}`, SVG));
    box.appendChild(svg);
    return box;
  }));
}

function drawHeat(points) {
  const g = document.querySelector("#map .layer-heat");
  if (!g || !cockpit.project) return;
  g.replaceChildren(...points.map(([lon, lat, severity]) => {
    const [x, y] = cockpit.project(lon, lat);
    return el("circle", { cx: x, cy: y, r: 14, class: `heat sev-${severity}` }, null, SVG);
  }));
}

function drawAdvice(advice, titles) {
  const select = $("advice-kind");
  const kinds = Object.keys(titles);
  if (select.options.length !== kinds.length) {
    select.replaceChildren(...kinds.map((k) => el("option", { value: k }, titles[k])));
  }
  if (!advice) { $("advice-places").replaceChildren(); return; }
  select.value = advice.kind;
  $("advice-places").replaceChildren(...advice.places.map((p) => el("li", {},
    `${p.area || t("no_area")} · ${t("times", { n: p.count })}` +
    (p.unit ? ` → ${p.unit.name} (${(p.unit.distance_m / 1000).toFixed(1)} km)` : ` → ${t("no_unit")}`))));
  const hours = $("advice-hours"), byHour = new Array(24).fill(0);
  for (const h of advice.hours) byHour[h.hour] = h.count;
  const max = Math.max(1, ...byHour), top = new Set(advice.hours.slice(0, 3).map((h) => h.hour));
  hours.replaceChildren();
  byHour.forEach((n, h) => {
    const height = (n / max) * 90;
    hours.appendChild(el("rect", { x: h * 20 + 2, y: 100 - height, width: 16, height, class: top.has(h) ? "top" : "" }, null, SVG));
    hours.appendChild(el("text", { x: h * 20 + 10, y: 114 }, h, SVG));
  });
  const g = document.querySelector("#map .layer-advice");
  if (!g || !cockpit.project) return;
  g.replaceChildren();
  advice.places.forEach((p, i) => {
    const [x, y] = cockpit.project(p.lon, p.lat);
    if (p.unit) {
      const [ux, uy] = cockpit.project(p.unit.lon, p.unit.lat);
      g.appendChild(el("line", { x1: x, y1: y, x2: ux, y2: uy, class: "unit-link" }, null, SVG));
      const u = el("rect", { x: ux - 5, y: uy - 5, width: 10, height: 10, class: "unit" }, null, SVG);
      u.appendChild(el("title", {}, p.unit.name, SVG));
      g.appendChild(u);
    }
    const mark = el("g", { class: "place" }, null, SVG);
    mark.appendChild(el("circle", { cx: x, cy: y, r: 12 }, null, SVG));
    mark.appendChild(el("text", { x, y: y + 5 }, i + 1, SVG));
    g.appendChild(mark);
  });
}

startCockpit();
