// The maps of the pages: every element with data-map (see templates/macros.html).
//   data-worker  MapLibre's CSP worker (a file from our own origin: worker-src 'self')
//   data-source  a GeoJSON URL (the page's own JSON alternate) to draw and fit
//   data-bbox    west,south,east,north: a rectangle to draw and fit (a collection's extent)
//   data-draw    the id of a form with a bbox input: dragging a box fills it and submits
// No tiles and no fonts: nothing is fetched from anywhere but this server.
// Each map sets data-state="ready" once drawn, and is listed in window.pageMaps.
"use strict";

(function () {
  const COLOR = "#0a4f9e";
  const STYLE = {
    version: 8,
    sources: {},
    layers: [{ id: "ground", type: "background", paint: { "background-color": "#eef1f4" } }],
  };

  function boxPolygon(b) {
    return {
      type: "Feature",
      properties: {},
      geometry: { type: "Polygon", coordinates: [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]] },
    };
  }

  function extend(bounds, coords) {
    if (typeof coords[0] === "number") {
      bounds[0] = Math.min(bounds[0], coords[0]);
      bounds[1] = Math.min(bounds[1], coords[1]);
      bounds[2] = Math.max(bounds[2], coords[0]);
      bounds[3] = Math.max(bounds[3], coords[1]);
      return;
    }
    coords.forEach((c) => extend(bounds, c));
  }

  function boundsOf(features) {
    const bounds = [Infinity, Infinity, -Infinity, -Infinity];
    const visit = (g) => {
      if (!g) return;
      if (g.type === "GeometryCollection") g.geometries.forEach(visit);
      else extend(bounds, g.coordinates);
    };
    features.forEach((f) => visit(f.geometry));
    return bounds[0] <= bounds[2] ? bounds : null;
  }

  function fit(map, b) {
    if (!b) return;
    if (b[0] === b[2] && b[1] === b[3]) map.jumpTo({ center: [b[0], b[1]], zoom: 14 });
    else map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 30, animate: false, maxZoom: 16 });
  }

  function addFeatures(map, data) {
    const features = data.type === "FeatureCollection" ? data.features : [data];
    // tolerance 0: no simplification, so that a building smaller than a pixel at this zoom
    // is still drawn (and found by queryRenderedFeatures) rather than dropped.
    map.addSource("features", { type: "geojson", tolerance: 0,
      data: { type: "FeatureCollection", features } });
    const polygons = ["match", ["geometry-type"], ["Polygon", "MultiPolygon"], true, false];
    const lines = ["match", ["geometry-type"], ["LineString", "MultiLineString"], true, false];
    const points = ["match", ["geometry-type"], ["Point", "MultiPoint"], true, false];
    map.addLayer({ id: "features-fill", type: "fill", source: "features", filter: polygons,
      paint: { "fill-color": COLOR, "fill-opacity": 0.25, "fill-outline-color": COLOR } });
    map.addLayer({ id: "features-line", type: "line", source: "features", filter: lines,
      paint: { "line-color": COLOR, "line-width": 2 } });
    map.addLayer({ id: "features-point", type: "circle", source: "features", filter: points,
      paint: { "circle-color": COLOR, "circle-radius": 5, "circle-stroke-color": "#fff", "circle-stroke-width": 1 } });
    fit(map, boundsOf(features));
  }

  function addBox(map, id, box, color) {
    map.addSource(id, { type: "geojson", data: box ? boxPolygon(box) : { type: "FeatureCollection", features: [] } });
    map.addLayer({ id: id + "-fill", type: "fill", source: id, paint: { "fill-color": color, "fill-opacity": 0.15 } });
    map.addLayer({ id: id + "-line", type: "line", source: id, paint: { "line-color": color, "line-width": 2 } });
  }

  function round(value, low, high) {
    return Math.min(high, Math.max(low, Math.round(value * 1e6) / 1e6));
  }

  // A control with one toggle button; while it is pressed, a drag draws a box.
  function drawControl(map, form) {
    const box = document.createElement("div");
    box.className = "maplibregl-ctrl maplibregl-ctrl-group map-draw";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Draw a box";
    button.setAttribute("aria-pressed", "false");
    box.append(button);
    let start = null;
    const container = map.getContainer();
    const setDrawing = (on) => {
      button.setAttribute("aria-pressed", String(on));
      container.classList.toggle("drawing", on);
      if (on) map.dragPan.disable();
      else map.dragPan.enable();
    };
    button.addEventListener("click", () => setDrawing(button.getAttribute("aria-pressed") !== "true"));
    const corners = (a, b) => [Math.min(a.lng, b.lng), Math.min(a.lat, b.lat), Math.max(a.lng, b.lng), Math.max(a.lat, b.lat)];
    map.on("mousedown", (e) => {
      if (button.getAttribute("aria-pressed") === "true") start = e.lngLat;
    });
    map.on("mousemove", (e) => {
      if (start) map.getSource("drawn").setData(boxPolygon(corners(start, e.lngLat)));
    });
    map.on("mouseup", (e) => {
      if (!start) return;
      const b = corners(start, e.lngLat);
      start = null;
      setDrawing(false);
      if (b[0] === b[2] || b[1] === b[3]) return;
      const text = [round(b[0], -180, 180), round(b[1], -90, 90), round(b[2], -180, 180), round(b[3], -90, 90)].join(",");
      form.elements.namedItem("bbox").value = text;
      form.requestSubmit();
    });
    return { onAdd: () => box, onRemove: () => box.remove() };
  }

  function start(element) {
    maplibregl.setWorkerUrl(element.dataset.worker);
    element.dataset.state = "loading";
    const map = new maplibregl.Map({ container: element, style: STYLE, center: [0, 0], zoom: 1,
      attributionControl: false });
    map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
    const form = element.dataset.draw ? document.getElementById(element.dataset.draw) : null;
    if (form) map.addControl(drawControl(map, form), "top-left");
    window.pageMaps.push(map);
    map.once("load", async () => {
      if (form) addBox(map, "drawn", null, "#b35900");
      if (element.dataset.bbox) {
        const box = element.dataset.bbox.split(",").map(Number);
        addBox(map, "extent", box, COLOR);
        fit(map, box);
      }
      if (element.dataset.source) {
        const response = await fetch(element.dataset.source, { headers: { Accept: "application/geo+json" } });
        addFeatures(map, await response.json());
      }
      map.once("idle", () => { element.dataset.state = "ready"; });
    });
  }

  window.pageMaps = [];
  document.querySelectorAll("[data-map]").forEach(start);
})();
