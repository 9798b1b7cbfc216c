// The city map: areas, zones, routes and sites from the reference data, with labels, a legend, zoom and pan,
// and dense sites clustered. Layers for vehicles, alerts and advice are drawn by the pages.
"use strict";

const VIEW = { w: 1000, h: 800 };

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

// Draws ``map`` in ``svg``; returns the projection (lon, lat) -> [x, y], or null when there is no reference data
// (then the message says so).
function drawCityMap(svg, map, message) {
  svg.replaceChildren();
  const points = [];
  for (const f of [...features(map.areas), ...features(map.zones), ...features(map.routes)]) {
    for (const ring of rings(f.geometry)) points.push(...ring);
  }
  for (const s of map.sites) points.push([s.lon, s.lat]);
  message.hidden = points.length > 0;
  message.textContent = t("no_refdata");
  if (!points.length) return null;
  const lons = points.map((p) => p[0]), lats = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const scale = Math.min((VIEW.w - 40) / Math.max((x1 - x0) * k, 1e-9), (VIEW.h - 40) / Math.max(y1 - y0, 1e-9));
  const project = (lon, lat) => [20 + (lon - x0) * k * scale, VIEW.h - 20 - (lat - y0) * scale];
  const layer = (name) => { const g = el("g", { class: `layer-${name}` }, null, SVG); svg.appendChild(g); return g; };
  const path = (geometry, closed) => rings(geometry).map((ring) =>
    "M" + ring.map(([lon, lat]) => project(lon, lat).map((v) => v.toFixed(1)).join(",")).join("L") + (closed ? "Z" : "")).join("");
  const centre = (geometry) => {
    const pts = rings(geometry).flat().map(([lon, lat]) => project(lon, lat));
    return pts.length ? [pts.reduce((s, p) => s + p[0], 0) / pts.length, pts.reduce((s, p) => s + p[1], 0) / pts.length] : null;
  };
  const areas = layer("areas"), zones = layer("zones"), routes = layer("routes"), sites = layer("sites");
  const labels = layer("labels");
  const label = (xy, text, cls) => { if (xy && text) labels.appendChild(el("text", { x: xy[0].toFixed(1), y: xy[1].toFixed(1), class: cls }, text, SVG)); };
  for (const f of features(map.areas)) {
    const props = f.properties || {}, level = props.level || "";
    const p = el("path", { d: path(f.geometry, true), class: `area ${level}` }, null, SVG);
    p.appendChild(el("title", {}, props.name || "", SVG));
    areas.appendChild(p);
    if (level !== "city") label(centre(f.geometry), props.name, `label area-label ${level}`);
  }
  for (const f of features(map.zones)) {
    const props = f.properties || {};
    const p = el("path", { d: path(f.geometry, true), class: "zone" }, null, SVG);
    p.appendChild(el("title", {}, props.name || props.id || "", SVG));
    zones.appendChild(p);
    label(centre(f.geometry), props.name || props.id, "label zone-label");
  }
  for (const f of features(map.routes)) {
    const props = f.properties || {};
    const p = el("path", { d: path(f.geometry, false), class: "route" }, null, SVG);
    p.appendChild(el("title", {}, props.name || props.id || "", SVG));
    routes.appendChild(p);
    const line = rings(f.geometry)[0] || [];
    if (line.length) label(project(...line[Math.floor(line.length / 2)]), props.name || props.id, "label route-label");
  }
  drawSites(sites, map.sites, project, 1);
  svg._sites = { layer: sites, list: map.sites, project };
  zoomable(svg);
  return project;
}

// Sites closer than 10 pixels (at the current zoom) are one marker with their count; a closed site is never
// hidden in a cluster of open ones.
function drawSites(g, list, project, zoom) {
  const cell = 10 / zoom, cells = new Map();
  g.replaceChildren();
  for (const s of list) {
    const [x, y] = project(s.lon, s.lat);
    if (s.status === "closed") {
      const r = el("rect", { x: x - 3 / zoom, y: y - 3 / zoom, width: 6 / zoom, height: 6 / zoom, class: "site closed" }, null, SVG);
      r.appendChild(el("title", {}, `${s.name || s.id} (${s.category}, ${s.status})`, SVG));
      g.appendChild(r);
      continue;
    }
    const key = `${Math.round(x / cell)},${Math.round(y / cell)}`;
    if (!cells.has(key)) cells.set(key, []);
    cells.get(key).push([x, y, s]);
  }
  for (const members of cells.values()) {
    const x = members.reduce((a, m) => a + m[0], 0) / members.length, y = members.reduce((a, m) => a + m[1], 0) / members.length;
    if (members.length === 1) {
      const s = members[0][2];
      const r = el("rect", { x: x - 2.5 / zoom, y: y - 2.5 / zoom, width: 5 / zoom, height: 5 / zoom, class: `site ${s.status}` }, null, SVG);
      r.appendChild(el("title", {}, `${s.name || s.id} (${s.category}, ${s.status})`, SVG));
      g.appendChild(r);
    } else {
      const c = el("g", { class: "site-cluster" }, null, SVG);
      c.appendChild(el("circle", { cx: x, cy: y, r: (6 + Math.min(members.length, 30) / 5) / zoom }, null, SVG));
      c.appendChild(el("text", { x, y: y + 3 / zoom, "font-size": 9 / zoom }, members.length, SVG));
      c.appendChild(el("title", {}, members.map((m) => m[2].name || m[2].id).slice(0, 20).join(", "), SVG));
      g.appendChild(c);
    }
  }
}

// Wheel zooms around the pointer, dragging pans, double-click resets; the view box carries the state.
function zoomable(svg) {
  const view = { x: 0, y: 0, w: VIEW.w, h: VIEW.h };
  const apply = () => {
    svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
    const zoom = VIEW.w / view.w;
    svg.style.setProperty("--zoom", zoom);
    if (svg._sites) drawSites(svg._sites.layer, svg._sites.list, svg._sites.project, zoom);
  };
  const at = (event) => {
    const box = svg.getBoundingClientRect();
    const s = Math.max(view.w / box.width, view.h / box.height);
    return [view.x + (event.clientX - box.left - (box.width - view.w / s) / 2) * s,
            view.y + (event.clientY - box.top - (box.height - view.h / s) / 2) * s];
  };
  svg.zoomBy = (factor, centre = [view.x + view.w / 2, view.y + view.h / 2]) => {
    const w = Math.min(VIEW.w, Math.max(VIEW.w / 40, view.w / factor));
    const f = w / view.w;
    view.x = centre[0] - (centre[0] - view.x) * f; view.y = centre[1] - (centre[1] - view.y) * f;
    view.w = w; view.h = VIEW.h * w / VIEW.w;
    apply();
  };
  svg.resetZoom = () => { Object.assign(view, { x: 0, y: 0, w: VIEW.w, h: VIEW.h }); apply(); };
  svg.onwheel = (event) => { event.preventDefault(); svg.zoomBy(event.deltaY < 0 ? 1.25 : 0.8, at(event)); };
  let drag = null;
  svg.onpointerdown = (event) => { drag = [event.clientX, event.clientY, view.x, view.y]; };
  svg.onpointermove = (event) => {
    if (!drag) return;
    const box = svg.getBoundingClientRect(), s = Math.max(view.w / box.width, view.h / box.height);
    view.x = drag[2] - (event.clientX - drag[0]) * s; view.y = drag[3] - (event.clientY - drag[1]) * s;
    apply();
  };
  svg.onpointerup = svg.onpointerleave = () => { drag = null; };
  svg.ondblclick = () => svg.resetZoom();
}
