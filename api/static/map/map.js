// The dispatcher's map (docs/map.md): vector tiles of the registry on the vendored MapLibre GL JS,
// read with the login session cookie. No text layers, so no glyphs are needed; labels are HTML.
import {
  Map as MapLibre,
  NavigationControl,
  Popup,
  ScaleControl,
  addProtocol,
  setWorkerUrl,
} from "/static/maplibre-gl/maplibre-gl.mjs";
import { gcjTileLoader, toWgs84 } from "/static/map/crs.js";

setWorkerUrl("/static/maplibre-gl/maplibre-gl-worker.mjs");

const config = JSON.parse(document.getElementById("map-config").textContent);
const PALETTE = ["#1d4ed8", "#dc2626", "#16a34a", "#0891b2", "#9333ea", "#b45309", "#db2777", "#4b5563"];
const ZONE_COLOURS = { street: "#ea580c", community: "#ca8a04", grid: "#65a30d", contract: "#7c3aed", pilot: "#0d9488" };
const STATUS = { resolved: "已确定", ambiguous: "有歧义（多家单位距离相近）", fallback: "属地兜底", unresolved: "未能确定" };
const RULES = {
  code: "按编码",
  nearest_asset: "最近部件",
  ambiguity: "有歧义",
  responsibility_rule: "责任规则",
  jurisdiction: "属地兜底（街道）",
  none: "无",
};
const ASSET_LAYERS = ["assets-point", "assets-line", "assets-fill"];
const COMPLAINT_LAYERS = ["complaints-point", "complaint-cells"];
const HOTSPOT_LAYERS = ["hotspots-halo", "hotspots-point"];
const COMPLAINT_STATUS = { received: "已受理", accepted: "已签收", returned: "已退件", closed: "已办结" };
const HOTSPOT_STATE = { active: "预警中", acknowledged: "已确认" };

// --- small helpers -------------------------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function party(label, unit) {
  const row = el("div", null, "party");
  row.append(el("span", `${label}：`, "label"));
  if (!unit) {
    row.append(el("span", "未登记", "none"));
    return row;
  }
  row.append(el("strong", unit.name));
  if (unit.phone) row.append(el("span", ` 电话 ${unit.phone}`, "phone"));
  return row;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    // The session ended (expired, logged out elsewhere, token revoked): log in again.
    window.location.assign("/map/login");
    throw new Error("login needed");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || body.detail || `HTTP ${response.status}`;
    throw new Error(typeof message === "string" ? message : JSON.stringify(message));
  }
  return body;
}

const result = document.getElementById("result");
function showResult(...nodes) {
  result.replaceChildren(...nodes);
}
function showError(message) {
  showResult(el("p", message, "error"));
}

// --- classes, legend and colours ----------------------------------------------------------------

const classes = await getJSON("/api/v1/classes").catch(() => []);
const classNames = Object.fromEntries(classes.map((c) => [c.code, c.name]));
const groups = [];
for (const cls of classes) {
  let group = groups.find((g) => g.code === cls.big_code);
  if (!group) {
    group = { code: cls.big_code, name: cls.big_name, classes: [], colour: PALETTE[groups.length % PALETTE.length] };
    groups.push(group);
  }
  group.classes.push(cls.code);
}
const classColour = groups.length
  ? ["match", ["get", "class"], ...groups.flatMap((g) => [g.classes, g.colour]), "#6b7280"]
  : "#6b7280";

const legend = document.getElementById("legend");
for (const group of groups) {
  const item = el("li");
  const swatch = el("span", null, "swatch");
  swatch.style.background = group.colour;
  item.append(swatch, el("span", `${group.code} ${group.name}`));
  legend.append(item);
}
for (const [label, className] of [
  ["街道/社区等区域（边界）", "swatch zone"],
  ["数量聚合（缩小时，点击看分类）", "swatch cell"],
  [`诉求（近 ${config.complaintDays || 30} 天，点击看摘要）`, "swatch complaint"],
  ["诉求数量聚合（缩小时）", "swatch complaint-cell"],
  ["高频 / 热点预警（点击看详情）", "swatch hotspot"],
]) {
  const item = el("li");
  item.append(el("span", null, className), el("span", label));
  legend.append(item);
}

const pick = document.getElementById("pick");
const categories = await getJSON("/api/v1/categories").catch(() => []);
if (categories.length) {
  const optgroup = el("optgroup");
  optgroup.label = "投诉类别";
  for (const cat of categories) {
    const option = el("option", cat.name);
    option.value = `category:${cat.name}`;
    optgroup.append(option);
  }
  pick.append(optgroup);
}
for (const group of groups) {
  const optgroup = el("optgroup");
  optgroup.label = group.name;
  for (const code of group.classes) {
    const option = el("option", `${code} ${classNames[code]}`);
    option.value = `class:${code}`;
    optgroup.append(option);
  }
  pick.append(optgroup);
}

// --- the map -------------------------------------------------------------------------------------

const basemap = config.basemap || {};
const style = {
  version: 8,
  sources: {},
  layers: [{ id: "background", type: "background", paint: { "background-color": "#f3f1ec" } }],
};
if (basemap.url && !basemap.style) {
  let tiles = [basemap.url];
  if (basemap.crs === "gcj02") {
    addProtocol("gcj02", gcjTileLoader(basemap.url));
    tiles = ["gcj02://{z}/{x}/{y}"];
  }
  style.sources.basemap = { type: "raster", tiles, tileSize: 256, attribution: basemap.attribution || "" };
  style.layers.push({ id: "basemap", type: "raster", source: "basemap" });
}

const [minx, miny, maxx, maxy] = config.bounds;
const map = new MapLibre({
  container: "map",
  style: basemap.style || style,
  bounds: [
    [minx, miny],
    [maxx, maxy],
  ],
  maxZoom: 21,
  attributionControl: { compact: true },
  // Chinese in the page's fonts, should a style ever draw text: no glyph files are fetched for it.
  localIdeographFontFamily: "'Noto Sans CJK SC', 'Microsoft YaHei', 'PingFang SC', sans-serif",
  canvasContextAttributes: { preserveDrawingBuffer: true },
});
map.addControl(new NavigationControl({ showCompass: false }));
map.addControl(new ScaleControl({ unit: "metric" }));
window.smartcodeMap = map;

function addOverlays() {
  map.addSource("registry", {
    type: "vector",
    tiles: [`${window.location.origin}/tiles/{z}/{x}/{y}.mvt`],
    minzoom: 0,
    maxzoom: Math.min(config.maxZoom || 22, 22),
  });
  map.addSource("mark", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  const zoneColour = ["match", ["get", "level"], ...Object.entries(ZONE_COLOURS).flat(), "#64748b"];
  map.addLayer({
    id: "zones-fill",
    type: "fill",
    source: "registry",
    "source-layer": "zones",
    paint: { "fill-color": zoneColour, "fill-opacity": 0.05 },
  });
  map.addLayer({
    id: "zones-line",
    type: "line",
    source: "registry",
    "source-layer": "zones",
    paint: {
      "line-color": zoneColour,
      "line-width": ["match", ["get", "level"], "street", 2.5, 1.2],
      "line-dasharray": [3, 2],
    },
  });
  map.addLayer({
    id: "assets-fill",
    type: "fill",
    source: "registry",
    "source-layer": "assets",
    filter: ["==", ["geometry-type"], "Polygon"],
    paint: { "fill-color": classColour, "fill-opacity": 0.35, "fill-outline-color": classColour },
  });
  map.addLayer({
    id: "assets-line",
    type: "line",
    source: "registry",
    "source-layer": "assets",
    filter: ["==", ["geometry-type"], "LineString"],
    paint: { "line-color": classColour, "line-width": ["interpolate", ["linear"], ["zoom"], 12, 1, 18, 4] },
  });
  map.addLayer({
    id: "assets-point",
    type: "circle",
    source: "registry",
    "source-layer": "assets",
    filter: ["==", ["geometry-type"], "Point"],
    paint: {
      "circle-color": classColour,
      "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 2.5, 16, 5, 20, 9],
      "circle-stroke-color": "#ffffff",
      "circle-stroke-width": 1,
    },
  });
  map.addLayer({
    id: "cells",
    type: "circle",
    source: "registry",
    "source-layer": "asset_cells",
    paint: {
      "circle-color": "#334155",
      "circle-opacity": 0.55,
      "circle-radius": ["interpolate", ["linear"], ["sqrt", ["get", "count"]], 1, 4, 30, 18, 300, 40],
      "circle-stroke-color": "#ffffff",
      "circle-stroke-width": 1,
    },
  });
  map.addLayer({
    id: "complaint-cells",
    type: "circle",
    source: "registry",
    "source-layer": "complaint_cells",
    paint: {
      "circle-color": "#ea580c",
      "circle-opacity": 0.45,
      "circle-radius": ["interpolate", ["linear"], ["sqrt", ["get", "count"]], 1, 4, 30, 16, 300, 34],
      "circle-stroke-color": "#ffffff",
      "circle-stroke-width": 1,
    },
  });
  map.addLayer({
    id: "complaints-point",
    type: "circle",
    source: "registry",
    "source-layer": "complaints",
    paint: {
      "circle-color": "#f97316",
      "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 2.5, 16, 4.5, 20, 8],
      "circle-stroke-color": "#7c2d12",
      "circle-stroke-width": 1,
    },
  });
  map.addLayer({
    id: "hotspots-halo",
    type: "circle",
    source: "registry",
    "source-layer": "hotspots",
    paint: {
      "circle-color": "rgba(220, 38, 38, 0.18)",
      "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 8, 16, 16, 20, 28],
      "circle-stroke-color": "#dc2626",
      "circle-stroke-width": 2,
    },
  });
  map.addLayer({
    id: "hotspots-point",
    type: "circle",
    source: "registry",
    "source-layer": "hotspots",
    paint: { "circle-color": "#dc2626", "circle-radius": 3 },
  });
  map.addLayer({
    id: "mark",
    type: "circle",
    source: "mark",
    paint: { "circle-radius": 7, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": "#e11d48", "circle-stroke-width": 3 },
  });
  for (const layer of [...ASSET_LAYERS, "cells", ...COMPLAINT_LAYERS, ...HOTSPOT_LAYERS]) {
    map.on("mouseenter", layer, () => (map.getCanvas().style.cursor = "pointer"));
    map.on("mouseleave", layer, () => (map.getCanvas().style.cursor = ""));
  }
}

function toggle(checkbox, layers) {
  const apply = () => {
    for (const id of layers) {
      if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", checkbox.checked ? "visible" : "none");
    }
  };
  checkbox.addEventListener("change", apply);
  apply();
}

map.on("load", () => {
  addOverlays();
  toggle(document.getElementById("show-complaints"), COMPLAINT_LAYERS);
  toggle(document.getElementById("show-hotspots"), HOTSPOT_LAYERS);
  map.once("idle", () => document.body.setAttribute("data-map-ready", "1"));
});

let popup = null;
function openPopup(lngLat, node) {
  if (popup) popup.remove();
  popup = new Popup({ maxWidth: "340px" }).setLngLat(lngLat).setDOMContent(node).addTo(map);
}

function mark(lon, lat) {
  map.getSource("mark")?.setData({ type: "Feature", geometry: { type: "Point", coordinates: [lon, lat] }, properties: {} });
}

// --- what a click shows ----------------------------------------------------------------------------

async function showAsset(code, lngLat) {
  let asset;
  try {
    asset = await getJSON(`/api/v1/assets/${encodeURIComponent(code)}`);
  } catch (error) {
    showError(`部件 ${code}：${error.message}`);
    return null;
  }
  const box = el("div", null, "asset");
  box.append(el("h3", `${asset.class.name}（${asset.class.code}）`));
  box.append(el("div", `智慧码 ${asset.code_display || asset.code}`, "code"));
  box.append(el("div", `状态：${asset.state}${asset.in_use === false ? "（已注销）" : ""}`));
  box.append(party("权属单位", asset.owner), party("养护单位", asset.maintainer), party("主管部门", asset.supervisor));
  if (asset.address) box.append(el("div", `地址：${asset.address}`, "small"));
  const position = asset.position ? [asset.position.lon, asset.position.lat] : [lngLat.lng, lngLat.lat];
  if (!asset.owner && asset.in_use !== false) {
    // No registered owner (无主): what the dispatcher needs is who answers for it, so run the rule
    // chain at the asset for its class, as a complaint about it would be resolved.
    box.append(el("h4", "未登记权属，按规则判定：", "ownerless"));
    try {
      const answer = await getJSON(
        `/api/v1/resolve?lon=${position[0]}&lat=${position[1]}&crs=wgs84&class=${encodeURIComponent(asset.class.code)}`,
      );
      box.append(resolutionBox(answer));
    } catch (error) {
      box.append(el("p", `判定失败：${error.message}`, "error"));
    }
  }
  openPopup(position, box);
  showResult(box.cloneNode(true));
  mark(...position);
  return asset;
}

function showCell(feature, lngLat) {
  const p = feature.properties;
  const box = el("div", null, "cell");
  box.append(el("h3", `此处共 ${p.count} 个部件`));
  let perClass = {};
  let owners = [];
  try {
    perClass = JSON.parse(p.classes || "{}");
    owners = JSON.parse(p.top_owners || "[]");
  } catch {
    // A malformed property only costs the breakdown; the count above stands.
  }
  const list = el("ul");
  for (const [code, n] of Object.entries(perClass).sort((a, b) => b[1] - a[1])) {
    list.append(el("li", `${classNames[code] || code}（${code}）：${n}`));
  }
  box.append(list);
  if (owners.length) {
    box.append(el("div", `权属单位（共 ${p.owners} 家），最多的：`));
    const ol = el("ul");
    for (const [name, n] of owners) ol.append(el("li", `${name}：${n}`));
    box.append(ol);
  }
  box.append(el("div", "放大地图可看到单个部件。", "small"));
  openPopup(lngLat, box);
}

function localTime(iso) {
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? iso || "" : at.toLocaleString("zh-CN", { hour12: false });
}

async function showComplaint(feature, lngLat) {
  const p = feature.properties;
  const box = el("div", null, "complaint");
  box.dataset.reference = p.reference;
  box.append(el("h3", `诉求 ${p.reference}`));
  box.append(el("div", `类别：${p.category || "（未分类）"}`));
  box.append(el("div", `状态：${COMPLAINT_STATUS[p.status] || p.status}`));
  box.append(el("div", `受理时间：${localTime(p.received_at)}`));
  if (p.asset_code) box.append(el("div", `扫码部件：${p.asset_code}`, "code"));
  openPopup(lngLat, box);
  showResult(box.cloneNode(true));
  // The record adds what the registry answered on arrival: who was named responsible.
  try {
    const view = await getJSON(`/api/v1/complaints/${encodeURIComponent(p.reference)}`);
    const more = box.cloneNode(true);
    const resolution = view.resolution || {};
    more.append(party("责任单位", resolution.owner), party("养护单位", resolution.maintainer));
    if (view.description) more.append(el("div", `描述：${view.description}`, "small"));
    showResult(more);
  } catch (error) {
    result.append(el("p", `诉求详情：${error.message}`, "small"));
  }
}

function showComplaintCell(feature, lngLat) {
  const p = feature.properties;
  const box = el("div", null, "cell");
  box.append(el("h3", `此处共 ${p.count} 条诉求`));
  let perCategory = {};
  try {
    perCategory = JSON.parse(p.categories || "{}");
  } catch {
    // The count above stands without the breakdown.
  }
  const list = el("ul");
  for (const [name, n] of Object.entries(perCategory).sort((a, b) => b[1] - a[1])) {
    list.append(el("li", `${name}：${n}`));
  }
  box.append(list, el("div", "放大地图可看到单条诉求。", "small"));
  openPopup(lngLat, box);
}

function showHotspot(feature, lngLat) {
  const p = feature.properties;
  const box = el("div", null, "hotspot");
  box.dataset.warning = String(p.id);
  box.append(el("h3", `${p.kind_label}预警 · ${HOTSPOT_STATE[p.state] || p.state}`));
  if (p.kind === "asset") box.append(el("div", `部件：${p.asset_code}`, "code"));
  else box.append(el("div", `类别：${p.category}（半径 ${Math.round(p.radius_m)} 米内）`));
  box.append(el("div", `诉求数：${p.count}`));
  box.append(el("div", `最近一条：${localTime(p.last_at)}`));
  box.append(el("div", `预警编号 ${p.id}（/api/v1/hotspots）`, "small"));
  openPopup(lngLat, box);
  showResult(box.cloneNode(true));
}

function pickParams() {
  const [kind, value] = (pick.value || "").split(/:(.*)/s);
  if (kind === "category") return `&category=${encodeURIComponent(value)}`;
  if (kind === "class") return `&class=${encodeURIComponent(value)}`;
  return "";
}

// The resolve API's answer as the side panel shows it: status, the rule that decided, the parties,
// the zones and the resolver's explanation, step by step.
function resolutionBox(answer, zoneNames = []) {
  const box = el("div", null, "resolution");
  box.dataset.status = answer.status;
  box.append(el("h3", `责任单位 · ${STATUS[answer.status] || answer.status}`));
  box.append(el("div", `依据：${RULES[answer.rule] || answer.rule}`, "rule"));
  if (answer.asset) {
    const cls = answer.asset.class || {};
    box.append(el("div", `部件：${cls.name || ""} ${answer.asset.code_display || answer.asset.code}`));
  }
  box.append(party("权属单位", answer.owner), party("养护单位", answer.maintainer), party("主管部门", answer.supervisor));
  const zones = (answer.zones || []).map((z) => (z.zone ? z.zone.name : z.name)).filter(Boolean);
  const names = [...new Set([...zoneNames, ...zones])];
  if (names.length) box.append(el("div", `所在区域：${names.join("、")}`, "small"));
  if (answer.explanation && answer.explanation.length) {
    box.append(el("div", "判定过程：", "label steps"));
    const steps = el("ol", null, "explanation");
    for (const line of answer.explanation) steps.append(el("li", line));
    box.append(steps);
  }
  if (answer.candidates && answer.candidates.length > 1) {
    box.append(el("div", `附近候选部件 ${answer.candidates.length} 个`, "small"));
  }
  return box;
}

async function resolveAt(x, y, crs, at, zoneNames = []) {
  let answer;
  try {
    answer = await getJSON(`/api/v1/resolve?lon=${x}&lat=${y}&crs=${crs}${pickParams()}`);
  } catch (error) {
    showError(`查询失败：${error.message}`);
    return null;
  }
  const box = resolutionBox(answer, zoneNames);
  openPopup(at, box.cloneNode(true));
  showResult(box);
  mark(at[0], at[1]);
  return answer;
}

map.on("click", async (event) => {
  const { x, y } = event.point;
  const near = [
    [x - 6, y - 6],
    [x + 6, y + 6],
  ];
  const visible = (ids) => ids.filter((id) => map.getLayer(id) && map.getLayoutProperty(id, "visibility") !== "none");
  // A warning or a complaint drawn on top of an asset is what the click meant.
  const spots = visible(HOTSPOT_LAYERS);
  const spotHits = spots.length ? map.queryRenderedFeatures(near, { layers: spots }) : [];
  if (spotHits.length) {
    showHotspot(spotHits[0], event.lngLat);
    return;
  }
  const complaintHits = visible(["complaints-point"]).length
    ? map.queryRenderedFeatures(near, { layers: ["complaints-point"] })
    : [];
  if (complaintHits.length) {
    await showComplaint(complaintHits[0], event.lngLat);
    return;
  }
  const layers = ASSET_LAYERS.filter((id) => map.getLayer(id));
  const hits = layers.length ? map.queryRenderedFeatures(near, { layers }) : [];
  // Points before lines before areas: the one drawn on top is the one meant.
  hits.sort((a, b) => ASSET_LAYERS.indexOf(a.layer.id) - ASSET_LAYERS.indexOf(b.layer.id));
  if (hits.length) {
    await showAsset(hits[0].properties.code, event.lngLat);
    return;
  }
  const cells = map.getLayer("cells") ? map.queryRenderedFeatures(near, { layers: ["cells"] }) : [];
  if (cells.length) {
    showCell(cells[0], event.lngLat);
    return;
  }
  const complaintCells = visible(["complaint-cells"]).length
    ? map.queryRenderedFeatures(near, { layers: ["complaint-cells"] })
    : [];
  if (complaintCells.length) {
    showComplaintCell(complaintCells[0], event.lngLat);
    return;
  }
  const zones = map.getLayer("zones-fill") ? map.queryRenderedFeatures(event.point, { layers: ["zones-fill"] }) : [];
  const names = zones.map((f) => f.properties.name).filter(Boolean);
  const lon = Number(event.lngLat.lng.toFixed(7));
  const lat = Number(event.lngLat.lat.toFixed(7));
  await resolveAt(lon, lat, "wgs84", [lon, lat], names);
});

// --- search by code or label URL, and coordinates ------------------------------------------------

export function codeFromInput(text) {
  const value = text.trim();
  const fromUrl = value.match(/\/c\/([0-9A-Za-z-]+)/);
  return (fromUrl ? fromUrl[1] : value).replace(/[\s-]/g, "");
}

async function search() {
  const code = codeFromInput(document.getElementById("search").value);
  if (!code) return;
  try {
    const asset = await getJSON(`/api/v1/assets/${encodeURIComponent(code)}`);
    if (asset.position) {
      map.flyTo({ center: [asset.position.lon, asset.position.lat], zoom: Math.max(map.getZoom(), 18) });
      await showAsset(code, { lng: asset.position.lon, lat: asset.position.lat });
    }
  } catch (error) {
    showError(`未找到部件 ${code}：${error.message}`);
  }
}

export function parseCoordinates(text) {
  const numbers = text.match(/-?\d+(?:\.\d+)?/g);
  if (!numbers || numbers.length !== 2) return null;
  let [a, b] = numbers.map(Number);
  // Written latitude first (22.70, 114.35)? In China a longitude is above 73, a latitude below 54.
  if (Math.abs(a) < 60 && Math.abs(b) > 60) [a, b] = [b, a];
  return [a, b];
}

async function resolveTyped() {
  const xy = parseCoordinates(document.getElementById("coords").value);
  if (!xy) {
    showError("请输入两个数字：经度, 纬度（例如 114.35, 22.70）");
    return;
  }
  const crs = document.getElementById("coords-crs").value;
  const at = toWgs84(xy[0], xy[1], crs);
  map.flyTo({ center: at, zoom: Math.max(map.getZoom(), 17) });
  // The server converts the typed coordinates itself (crs=...); the map only needs where to look.
  await resolveAt(xy[0], xy[1], crs, at);
}

document.getElementById("search-go").addEventListener("click", search);
document.getElementById("search").addEventListener("keydown", (e) => e.key === "Enter" && search());
document.getElementById("coords-go").addEventListener("click", resolveTyped);
document.getElementById("coords").addEventListener("keydown", (e) => e.key === "Enter" && resolveTyped());
