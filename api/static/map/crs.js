// Chinese map coordinate systems in the browser: a port of gis/crs.py (WGS84 <-> GCJ-02 <-> BD-09)
// and the shifted raster basemap protocol for GCJ-02 tile servers (AMap, Tencent); docs/map.md.

const A = 6378245.0; // Krasovsky 1940 semi-major axis, as the GCJ-02 formula uses it
const EE = 0.00669342162296594323;
const BD_X_PI = (Math.PI * 3000.0) / 180.0;

export function inChina(lon, lat) {
  return lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271;
}

function gcjOffset(lon, lat) {
  const x = lon - 105.0;
  const y = lat - 35.0;
  const pi = Math.PI;
  const r = Math.sqrt(Math.abs(x));
  const wiggle = ((20.0 * Math.sin(6.0 * pi * x) + 20.0 * Math.sin(2.0 * pi * x)) * 2.0) / 3.0;
  let north = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * r + wiggle;
  north += ((20.0 * Math.sin(pi * y) + 40.0 * Math.sin((pi / 3.0) * y)) * 2.0) / 3.0;
  north += ((160.0 * Math.sin((pi / 12.0) * y) + 320.0 * Math.sin((pi / 30.0) * y)) * 2.0) / 3.0;
  let east = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * r + wiggle;
  east += ((20.0 * Math.sin(pi * x) + 40.0 * Math.sin((pi / 3.0) * x)) * 2.0) / 3.0;
  east += ((150.0 * Math.sin((pi / 12.0) * x) + 300.0 * Math.sin((pi / 30.0) * x)) * 2.0) / 3.0;
  const sin2 = Math.sin((lat * pi) / 180.0) ** 2;
  const w = 1.0 - EE * sin2;
  const meridian = (A * (1.0 - EE)) / (w * Math.sqrt(w));
  const normal = A / Math.sqrt(w);
  return [(east * 180.0) / pi / (normal * Math.sqrt(1.0 - sin2)), (north * 180.0) / pi / meridian];
}

export function wgs84ToGcj02(lon, lat) {
  if (!inChina(lon, lat)) return [lon, lat];
  const [dlon, dlat] = gcjOffset(lon, lat);
  return [lon + dlon, lat + dlat];
}

// The inverse by fixed-point iteration (the offset changes slowly, so a few steps reach ~1 cm).
function invert(forward, x, y, tolerance, start = [x, y]) {
  let [lon, lat] = start;
  for (let i = 0; i < 30; i++) {
    const [fx, fy] = forward(lon, lat);
    const ex = fx - x;
    const ey = fy - y;
    lon -= ex;
    lat -= ey;
    if (Math.abs(ex) < tolerance && Math.abs(ey) < tolerance) break;
  }
  return [lon, lat];
}

export function gcj02ToWgs84(lon, lat) {
  if (!inChina(lon, lat)) return [lon, lat];
  return invert(wgs84ToGcj02, lon, lat, 1e-9);
}

export function gcj02ToBd09(lon, lat) {
  const radius = Math.hypot(lon, lat) + 0.00002 * Math.sin(lat * BD_X_PI);
  const theta = Math.atan2(lat, lon) + 0.000003 * Math.cos(lon * BD_X_PI);
  return [radius * Math.cos(theta) + 0.0065, radius * Math.sin(theta) + 0.006];
}

export function bd09ToGcj02(lon, lat) {
  // The closed form is only good to about a metre; it starts the iteration, as in gis/crs.py.
  const x = lon - 0.0065;
  const y = lat - 0.006;
  const radius = Math.hypot(x, y) - 0.00002 * Math.sin(y * BD_X_PI);
  const theta = Math.atan2(y, x) - 0.000003 * Math.cos(x * BD_X_PI);
  return invert(gcj02ToBd09, lon, lat, 1e-10, [radius * Math.cos(theta), radius * Math.sin(theta)]);
}

export function toWgs84(lon, lat, crs) {
  if (crs === "gcj02") return gcj02ToWgs84(lon, lat);
  if (crs === "bd09") return gcj02ToWgs84(...bd09ToGcj02(lon, lat));
  return [lon, lat];
}

// --- Web Mercator in world pixels of 256-pixel tiles ------------------------------------------------

export function worldPixel(lon, lat, z) {
  const size = 256 * 2 ** z;
  const s = Math.sin((lat * Math.PI) / 180.0);
  return [((lon + 180.0) / 360.0) * size, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * size];
}

function tileCenter(z, x, y) {
  const n = 2 ** z;
  const lon = ((x + 0.5) / n) * 360.0 - 180.0;
  const lat = (Math.atan(Math.sinh(Math.PI * (1 - (2 * (y + 0.5)) / n))) * 180.0) / Math.PI;
  return [lon, lat];
}

// How far (in pixels of zoom z) the GCJ-02 picture of the WGS84 tile z/x/y lies from it: the
// GCJ-02 server draws a place at its GCJ-02 coordinates, so the content of WGS84 pixel p is found
// at p + shift on the GCJ-02 tiles. Across one tile the shift varies by well under a pixel.
export function gcjShiftPixels(z, x, y) {
  const [lon, lat] = tileCenter(z, x, y);
  const [glon, glat] = wgs84ToGcj02(lon, lat);
  const [px, py] = worldPixel(lon, lat, z);
  const [gx, gy] = worldPixel(glon, glat, z);
  return [gx - px, gy - py];
}

// A MapLibre protocol "gcj02://z/x/y" serving WGS84-aligned tiles cut from a GCJ-02 raster server:
// the (up to) four GCJ-02 tiles covering the shifted square are drawn onto one canvas. The overlays,
// the clicks and the resolve queries all stay in WGS84; only the basemap picture moves.
export function gcjTileLoader(template) {
  const tileUrl = (z, x, y) => template.replace("{z}", z).replace("{x}", x).replace("{y}", y);
  const image = async (url, signal) => {
    const response = await fetch(url, { signal });
    if (!response.ok) return null;
    return createImageBitmap(await response.blob());
  };
  return async (params, abortController) => {
    const [z, x, y] = params.url.replace("gcj02://", "").split("/").map(Number);
    const [dx, dy] = gcjShiftPixels(z, x, y);
    const left = x * 256 + dx;
    const top = y * 256 + dy;
    const tx0 = Math.floor(left / 256);
    const ty0 = Math.floor(top / 256);
    const canvas = new OffscreenCanvas(256, 256);
    const ctx = canvas.getContext("2d");
    const n = 2 ** z;
    const draws = [];
    for (const tx of [tx0, tx0 + 1]) {
      for (const ty of [ty0, ty0 + 1]) {
        if (ty < 0 || ty >= n) continue;
        const wrapped = ((tx % n) + n) % n;
        draws.push(
          image(tileUrl(z, wrapped, ty), abortController.signal).then((bitmap) => {
            if (bitmap) ctx.drawImage(bitmap, tx * 256 - left, ty * 256 - top);
          }),
        );
      }
    }
    await Promise.all(draws);
    const blob = await canvas.convertToBlob({ type: "image/png" });
    return { data: await blob.arrayBuffer() };
  };
}
