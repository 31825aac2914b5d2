// The dashboard (templates/dashboard.html), built on the public endpoints only.
//
// Each layer is drawn from what its size allows:
//   "file"   the whole file (/geojson/<name>) for layers up to data-whole-file-bytes;
//   "tiles"  the version's vector tiles, once built (the tileset says "ready");
//   "pages"  until then, the items in view: one bbox page per pan (data-page-limit).
// A bigger layer is never downloaded whole. Nothing is fetched from anywhere but
// this server (no base map, no fonts); MapLibre's worker is a file of ours.
// window.dashboard lets tests ask the map what it drew.
"use strict";

(function () {
  const root = document.getElementById("dashboard");
  const config = {
    worker: root.dataset.worker,
    wholeFileBytes: Number(root.dataset.wholeFileBytes),
    pageLimit: Number(root.dataset.pageLimit),
  };
  const COLORS = ["#0a4f9e", "#b3261e", "#1e6b34", "#7a3e9d", "#8a5a00", "#00666e"];
  const EMPTY = { type: "FeatureCollection", features: [] };
  const KINDS = {
    fill: ["Polygon", "MultiPolygon"],
    line: ["LineString", "MultiLineString"],
    circle: ["Point", "MultiPoint"],
  };
  const TILE_RETRY_MS = 10000;
  const READY_EVERY_MS = 15000;
  const datasets = new Map(); // name -> dataset entry (+ collection, tiles state)
  const layers = new Map(); // name -> layer on the map
  let pending = 0; // page loads in flight (window.dashboard.settled waits for them)

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    Object.entries(attributes || {}).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  }

  function bytes(n) {
    if (typeof n !== "number") return "";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  }

  function say(text) { $("status").textContent = text; }

  // -- the map -----------------------------------------------------------------
  maplibregl.setWorkerUrl(config.worker);
  const map = new maplibregl.Map({
    container: "map",
    style: {
      version: 8, sources: {},
      layers: [{ id: "ground", type: "background", paint: { "background-color": "#eef1f4" } }],
    },
    center: [0, 20], zoom: 1, attributionControl: false, maxPitch: 0,
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.addControl(new maplibregl.ScaleControl());
  const mapLoaded = new Promise((resolve) => map.once("load", resolve));

  function styleIds(name) { return Object.keys(KINDS).map((kind) => `layer-${name}-${kind}`); }

  function kindFilter(kind, userFilter) {
    const shape = ["in", ["geometry-type"], ["literal", KINDS[kind]]];
    return userFilter ? ["all", shape, userFilter] : shape;
  }

  function addStyleLayers(layer) {
    const from = { source: layer.sourceId };
    if (layer.sourceLayer) from["source-layer"] = layer.sourceLayer;
    const paint = {
      fill: { "fill-color": layer.color, "fill-opacity": 0.3, "fill-outline-color": layer.color },
      line: { "line-color": layer.color, "line-width": 1.5 },
      circle: { "circle-color": layer.color, "circle-radius": 3.5,
                "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 },
    };
    Object.keys(KINDS).forEach((kind, i) => {
      map.addLayer({ id: styleIds(layer.name)[i], type: kind, ...from,
                     filter: kindFilter(kind, null), paint: paint[kind] });
    });
  }

  function boundsOf(bbox) {
    if (!Array.isArray(bbox) || bbox.length < 4) return null;
    const [w, s, e, n] = bbox.length === 6 ? [bbox[0], bbox[1], bbox[3], bbox[4]] : bbox;
    return [[w, s], [e, n]];
  }

  function fitTo(bbox, animate) {
    const bounds = boundsOf(bbox);
    if (bounds) map.fitBounds(bounds, { padding: 24, animate: Boolean(animate) });
  }

  function fitAll() {
    const boxes = [...datasets.values()].map((d) => d.bbox).filter((b) => boundsOf(b));
    if (!boxes.length) return;
    const all = boxes.map(boundsOf).reduce((a, b) => [
      [Math.min(a[0][0], b[0][0]), Math.min(a[0][1], b[0][1])],
      [Math.max(a[1][0], b[1][0]), Math.max(a[1][1], b[1][1])]]);
    map.fitBounds(all, { padding: 24, animate: false });
  }

  // -- the datasets table ------------------------------------------------------
  function stateText(state) {
    if (!state) return "";
    return state.status + (state.reason ? `: ${state.reason}` : "");
  }

  function stateCell(state) {
    const cell = element("td", stateText(state));
    if (state && state.status) cell.className = `state-${state.status}`;
    return cell;
  }

  function row(d, index) {
    const tr = element("tr", null, { "data-name": d.name });
    const toggle = element("input", null, { type: "checkbox", id: `show-${index}` });
    toggle.disabled = d.status !== "ready" || !d.collection;
    toggle.addEventListener("change", () => (toggle.checked ? show(d.name) : hide(d.name)));
    const label = element("label", null, { for: `show-${index}` });
    const swatch = element("span", null, { class: "swatch", "aria-hidden": "true" });
    swatch.style.backgroundColor = COLORS[index % COLORS.length];
    label.append(swatch, element("span", `Show ${d.name}`, { class: "visually-hidden" }));
    const first = element("td");
    first.append(toggle, label);
    const name = element("td");
    name.append(element("a", d.name, { href: `/collections/${enc(d.name)}?f=html` }));
    const actions = element("td");
    if (d.status === "ready") {
      const zoom = element("button", "Zoom to", { type: "button", class: "secondary" });
      zoom.setAttribute("aria-label", `Zoom to ${d.name}`);
      zoom.addEventListener("click", () => fitTo(d.bbox, true));
      const download = element("a", `Download (${bytes(d.bytes)})`,
                               { href: `/geojson/${enc(d.name)}?download=1`, class: "button",
                                 "aria-label": `Download ${d.name} (${bytes(d.bytes)})` });
      actions.append(zoom, " ", download);
    }
    tr.append(first, name, element("td", d.status === "ready" ? "ready" : `${d.status}: ${d.error || ""}`),
              element("td", bytes(d.bytes)), element("td", d.features ?? ""),
              element("td", d.version ? d.version.slice(0, 8) : ""),
              element("td", d.published ? d.published.replace("T", " ").replace("Z", " UTC") : ""),
              element("td", (d.encodings || []).join(", ") || "identity"),
              stateCell(d.collection && d.collection.index), stateCell(d.tiles), actions);
    return tr;
  }

  function renderTable() {
    const body = $("datasets").tBodies[0];
    body.replaceChildren(...[...datasets.values()].map(row));
    if (!datasets.size) {
      const empty = element("tr");
      empty.append(element("td", "No dataset is published.", { colspan: "11" }));
      body.append(empty);
    }
    applyNameFilter();
  }

  function applyNameFilter() {
    const wanted = $("name-filter").value.trim().toLowerCase();
    let shown = 0;
    for (const tr of $("datasets").tBodies[0].rows) {
      const name = tr.dataset.name;
      if (name === undefined) continue;
      const match = !wanted || name.toLowerCase().includes(wanted);
      tr.classList.toggle("off-filter", !match);
      shown += match ? 1 : 0;
    }
    $("shown").textContent = `${shown} of ${datasets.size} datasets`;
  }

  function tilesetLink(collection) {
    const link = (collection.links || []).find((l) => /tilesets-vector$/.test(l.rel));
    return link ? link.href.split("?")[0] : null;
  }

  async function loadTileState(d) {
    const href = d.collection && tilesetLink(d.collection);
    if (!href) return;
    try {
      const tilesets = await getJSON(href);
      const set = (tilesets.tilesets || [])[0];
      if (!set) return;
      const url = (set.links || []).find((l) => l.rel === "self") || set;
      d.tilesetUrl = (url.href || "").split("?")[0];
      d.tiles = (await getJSON(d.tilesetUrl)).tiles || null;
    } catch (error) {
      d.tiles = { status: "unknown", reason: String(error.message || error) };
    }
  }

  async function loadDatasets() {
    const [listing, collections] = await Promise.all([getJSON("/api/datasets"),
                                                      getJSON("/collections")]);
    const byId = new Map((collections.collections || []).map((c) => [c.id, c]));
    for (const d of listing.datasets || []) datasets.set(d.name, { ...d, collection: byId.get(d.name) || null });
    await Promise.all([...datasets.values()].map(loadTileState));
    renderTable();
  }

  // -- layers ------------------------------------------------------------------
  function newLayer(name) {
    const index = [...datasets.keys()].indexOf(name);
    return { name, color: COLORS[index % COLORS.length], sourceId: `source-${name}`,
             sourceLayer: null, mode: null, filter: null, matched: null, returned: null, seq: 0 };
  }

  async function tileSource(d) {
    if (!d.tilesetUrl || !d.tiles || d.tiles.status !== "ready") return null;
    const tilejson = await getJSON(`${d.tilesetUrl}?f=tilejson`);
    return { tilejson, source: { type: "vector", tiles: tilejson.tiles, minzoom: tilejson.minzoom,
                                 maxzoom: tilejson.maxzoom, bounds: tilejson.bounds } };
  }

  async function show(name) {
    await mapLoaded;
    const d = datasets.get(name);
    const layer = newLayer(name);
    layers.set(name, layer);
    if (d.bytes <= config.wholeFileBytes) {
      layer.mode = "file";
      // tolerance 0: no feature too small for the zoom is simplified away
      map.addSource(layer.sourceId, { type: "geojson", data: `/geojson/${enc(name)}`, tolerance: 0 });
    } else {
      const tiled = await tileSource(d).catch(() => null);
      if (!layers.has(name)) return; // turned off meanwhile
      if (tiled) {
        layer.mode = "tiles";
        layer.sourceLayer = tiled.tilejson.vector_layers[0].id;
        map.addSource(layer.sourceId, tiled.source);
      } else {
        layer.mode = "pages";
        map.addSource(layer.sourceId, { type: "geojson", data: EMPTY, tolerance: 0 });
        layer.retry = setTimeout(() => upgrade(name), TILE_RETRY_MS);
      }
    }
    addStyleLayers(layer);
    if (layer.mode === "pages") loadPage(layer);
    refreshFilterForm();
    describeLayers();
  }

  function removeFromMap(layer) {
    styleIds(layer.name).forEach((id) => map.getLayer(id) && map.removeLayer(id));
    if (map.getSource(layer.sourceId)) map.removeSource(layer.sourceId);
  }

  function hide(name) {
    const layer = layers.get(name);
    if (!layer) return;
    clearTimeout(layer.retry);
    layers.delete(name);
    removeFromMap(layer);
    refreshFilterForm();
    describeLayers();
  }

  // A paged layer switches to tiles as soon as its version's tiles are built.
  async function upgrade(name) {
    const layer = layers.get(name);
    if (!layer || layer.mode !== "pages") return;
    const d = datasets.get(name);
    await loadTileState(d);
    renderTable();
    const checkbox = $("datasets").querySelector(`tr[data-name="${CSS.escape(name)}"] input`);
    if (checkbox) checkbox.checked = true;
    if (d.tiles && d.tiles.status === "ready") {
      const filter = layer.filter;
      hide(name);
      await show(name);
      if (filter) setFilter(layers.get(name), filter);
    } else {
      layer.retry = setTimeout(() => upgrade(name), TILE_RETRY_MS);
    }
  }

  function viewBox() {
    const b = map.getBounds();
    const clamp = (v, low, high) => Math.min(Math.max(v, low), high);
    return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
            clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)].map((v) => v.toFixed(6));
  }

  async function loadPage(layer) {
    const seq = (layer.seq += 1);
    const query = new URLSearchParams({ bbox: viewBox().join(","), limit: String(config.pageLimit) });
    if (layer.filter) query.set(layer.filter.property, layer.filter.raw);
    pending += 1;
    try {
      const response = await fetch(`/collections/${enc(layer.name)}/items?${query}`,
                                   { headers: { Accept: "application/geo+json" } });
      const body = await response.json();
      if (seq !== layer.seq || layers.get(layer.name) !== layer) return; // a newer view won
      if (!response.ok) { say(`${layer.name}: ${body.description || response.status}`); return; }
      map.getSource(layer.sourceId).setData(body);
      layer.matched = body.numberMatched;
      layer.returned = body.numberReturned;
      describeLayers();
    } catch (error) {
      say(`${layer.name}: ${error.message || error}`);
    } finally {
      pending -= 1;
    }
  }

  let moveTimer = null;
  map.on("moveend", () => {
    clearTimeout(moveTimer);
    moveTimer = setTimeout(() => layers.forEach((l) => l.mode === "pages" && loadPage(l)), 150);
  });

  function describeLayers() {
    if (!layers.size) { say("No layer is on."); return; }
    const parts = [...layers.values()].map((l) => {
      if (l.mode === "pages" && l.matched !== null && l.returned < l.matched) {
        return `${l.name}: ${l.returned.toLocaleString()} of ${l.matched.toLocaleString()} features in view (zoom in for all; tiles are being built)`;
      }
      const how = { file: "whole file", tiles: "vector tiles", pages: "features in view" }[l.mode];
      return `${l.name}: ${how}`;
    });
    say(parts.join(" · "));
  }

  // -- filtering by a queryable property -----------------------------------------
  const queryables = new Map(); // name -> {property: type}

  async function queryablesOf(name) {
    if (!queryables.has(name)) {
      const schema = await getJSON(`/collections/${enc(name)}/queryables`);
      const found = {};
      Object.entries(schema.properties || {}).forEach(([key, spec]) => {
        if (spec.type && key !== "geometry") found[key] = spec.type;
      });
      queryables.set(name, found);
    }
    return queryables.get(name);
  }

  function refreshFilterForm() {
    const select = $("filter-layer");
    const current = select.value;
    const options = [...layers.keys()].map((name) => element("option", name, { value: name }));
    select.replaceChildren(...(options.length ? options : [element("option", "(turn a layer on)", { value: "" })]));
    if (layers.has(current)) select.value = current;
    refreshProperties();
  }

  async function refreshProperties() {
    const name = $("filter-layer").value;
    const select = $("filter-property");
    if (!name) { select.replaceChildren(); return; }
    const found = await queryablesOf(name);
    select.replaceChildren(...Object.entries(found).map(([key, type]) =>
      element("option", `${key} (${type})`, { value: key })));
  }

  function typed(raw, type) {
    if (type === "integer" || type === "number") {
      const value = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(value) || (type === "integer" && !Number.isInteger(value))) {
        throw new Error(`expected ${type === "integer" ? "an integer" : "a number"}, not "${raw}"`);
      }
      return value;
    }
    if (type === "boolean") {
      if (raw !== "true" && raw !== "false") throw new Error(`expected true or false, not "${raw}"`);
      return raw === "true";
    }
    return raw;
  }

  function setFilter(layer, filter) {
    layer.filter = filter;
    const expression = filter ? ["==", ["get", filter.property], filter.value] : null;
    Object.keys(KINDS).forEach((kind, i) => map.setFilter(styleIds(layer.name)[i], kindFilter(kind, expression)));
    if (layer.mode === "pages") loadPage(layer);
  }

  $("filter-layer").addEventListener("change", refreshProperties);
  $("layer-filter").addEventListener("submit", async (event) => {
    event.preventDefault();
    const layer = layers.get($("filter-layer").value);
    const property = $("filter-property").value;
    if (!layer || !property) { $("filter-note").textContent = "Turn a layer on first."; return; }
    const type = (await queryablesOf(layer.name))[property];
    const raw = $("filter-value").value;
    try {
      setFilter(layer, { property, raw, value: typed(raw, type) });
      $("filter-note").textContent = `${layer.name}: only ${property} = ${raw}`;
    } catch (error) {
      $("filter-note").textContent = `${property}: ${error.message}`;
    }
  });
  $("filter-clear").addEventListener("click", () => {
    const layer = layers.get($("filter-layer").value);
    if (layer) setFilter(layer, null);
    $("filter-note").textContent = "";
  });

  // -- clicking a feature ----------------------------------------------------------
  function layerOfStyle(id) {
    return [...layers.values()].find((l) => styleIds(l.name).includes(id)) || null;
  }

  function allStyleIds() { return [...layers.keys()].flatMap(styleIds); }

  function propertiesTable(caption, properties) {
    const table = element("table", null, { class: "properties" });
    table.append(element("caption", caption));
    const head = element("thead");
    const tr = element("tr");
    tr.append(element("th", "Property", { scope: "col" }), element("th", "Value", { scope: "col" }));
    head.append(tr);
    const body = element("tbody");
    Object.entries(properties || {}).forEach(([key, value]) => {
      const line = element("tr");
      line.append(element("th", key, { scope: "row" }),
                  element("td", value !== null && typeof value === "object" ? JSON.stringify(value) : value));
      body.append(line);
    });
    table.append(head, body);
    return table;
  }

  async function showFeature(found) {
    const layer = layerOfStyle(found.layer.id);
    const panel = $("feature");
    const id = found.id;
    let properties = found.properties;
    if (layer && id !== undefined && id !== null) {
      try {
        const feature = await getJSON(`/collections/${enc(layer.name)}/items/${enc(id)}`);
        properties = feature.properties;
      } catch (error) { /* the drawn properties are shown */ }
    }
    const caption = `${layer ? layer.name : "feature"} ${id ?? ""}`.trim();
    const parts = [propertiesTable(caption, properties)];
    if (layer && id !== undefined && id !== null) {
      const link = element("p");
      link.append(element("a", "Open the feature's page",
                          { href: `/collections/${enc(layer.name)}/items/${enc(id)}?f=html` }));
      parts.push(link);
    }
    panel.replaceChildren(...parts);
  }

  map.on("click", (event) => {
    const ids = allStyleIds();
    if (!ids.length) return;
    const { x, y } = event.point;
    const found = map.queryRenderedFeatures([[x - 4, y - 4], [x + 4, y + 4]], { layers: ids });
    if (found.length) showFeature(found[0]);
  });

  // -- readiness ---------------------------------------------------------------
  async function readiness() {
    const panel = $("ready");
    try {
      const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
      const body = await response.json();
      const lines = [element("p", response.ok ? "Ready" : `Not ready: ${body.description}`,
                             { class: response.ok ? "state-ready" : "state-not-ready" })];
      const cache = Object.fromEntries(Object.entries(body.cache || {}).map(([k, v]) => [`cache ${k}`, v]));
      const details = response.ok ? cache : body.checks || {};
      lines.push(propertiesTable(`/readyz at ${new Date().toLocaleTimeString()}`, details));
      panel.replaceChildren(...lines);
    } catch (error) {
      panel.replaceChildren(element("p", `/readyz: ${error.message || error}`, { class: "state-not-ready" }));
    }
  }

  // -- traffic: /api/metrics, rates between two polls --------------------------------
  let lastTraffic = null; // the previous digest

  function share(part, whole) { return whole > 0 ? `${(100 * part / whole).toFixed(1)} %` : "–"; }

  // The upper bound of the bucket holding the q-th request of the interval ("≤ 25 ms").
  function quantile(before, after, q) {
    const counts = after.duration_buckets.map(([le, n], i) => [le, n - ((before && before.duration_buckets[i]) ? before.duration_buckets[i][1] : 0)]);
    const total = counts.length ? counts[counts.length - 1][1] : 0;
    if (total <= 0) return "–";
    const found = counts.find(([, n]) => n >= q * total);
    if (!found || found[0] === null) return "over 60 s";
    return found[0] < 1 ? `≤ ${Math.round(found[0] * 1000 * 10) / 10} ms` : `≤ ${found[0]} s`;
  }

  function trafficFacts(before, now) {
    const seconds = before ? Math.max(now.time - before.time, 0.001) : null;
    const delta = (get) => get(now) - (before ? get(before) : 0);
    const requests = delta((d) => d.requests.total);
    const status = (k) => delta((d) => d.requests.by_status[k] || 0);
    const hits = delta((d) => d.cache.hit || 0);
    const misses = delta((d) => d.cache.miss || 0);
    const facts = {};
    if (seconds) {
      facts["requests/s"] = (requests / seconds).toFixed(1);
      facts["sent/s"] = `${bytes(delta((d) => d.response_bytes) / seconds)}`;
    } else {
      facts.requests = requests;
      facts.sent = bytes(now.response_bytes);
    }
    facts["server errors (5xx)"] = share(status("5xx"), requests);
    facts["client errors (4xx)"] = share(status("4xx"), requests);
    facts["median time"] = quantile(before, now, 0.5);
    facts["p95 time"] = quantile(before, now, 0.95);
    facts["in flight"] = now.in_flight;
    facts["shared cache hits"] = share(hits, hits + misses);
    facts["builds failed"] = delta((d) => d.builds.failed || 0);
    return facts;
  }

  // The next poll comes READY_EVERY_MS after the last one, whoever asked for it, so
  // that a poll asked for in between does not leave the next interval a sliver.
  let trafficTimer = null;

  async function traffic() {
    clearTimeout(trafficTimer);
    const panel = $("traffic");
    try {
      const response = await fetch("/api/metrics", { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) {
        panel.replaceChildren(element("p", `/api/metrics: ${body.description}`, { class: "help" }));
        return;
      }
      const over = lastTraffic ? `the last ${Math.round(body.time - lastTraffic.time)} s` : "since start";
      const scope = body.scope === "instance" ? "this instance's workers" : "this process";
      const facts = trafficFacts(lastTraffic, body);
      lastTraffic = body;
      panel.replaceChildren(propertiesTable(`${scope}, ${over}`, facts));
    } catch (error) {
      panel.replaceChildren(element("p", `/api/metrics: ${error.message || error}`, { class: "state-not-ready" }));
    } finally {
      clearTimeout(trafficTimer);
      trafficTimer = setTimeout(traffic, READY_EVERY_MS);
    }
  }

  // -- start ---------------------------------------------------------------------
  $("name-filter").addEventListener("input", applyNameFilter);
  const started = Promise.all([mapLoaded, loadDatasets()]).then(() => fitAll()).catch((error) => {
    say(`The datasets could not be loaded: ${error.message || error}`);
  });
  readiness();
  setInterval(readiness, READY_EVERY_MS);
  traffic();

  // Settled: no page load in flight, every source and tile loaded, not moving, twice
  // in a row 100 ms apart (a page's setData is drawn in the next frame).
  function settled() {
    let calm = 0;
    return new Promise((resolve) => {
      const check = () => {
        calm = pending === 0 && map.loaded() && map.areTilesLoaded() && !map.isMoving() ? calm + 1 : 0;
        if (calm >= 2) resolve(); else setTimeout(check, 100);
      };
      check();
    });
  }

  window.dashboard = {
    map,
    started,
    show: (name) => show(name),
    hide: (name) => hide(name),
    fit: (name) => fitTo(datasets.get(name).bbox, false),
    mode: (name) => (layers.get(name) || {}).mode || null,
    settled: async () => { await started; await settled(); },
    traffic: () => traffic(),
    renderedIds(name) {
      const layer = layers.get(name);
      if (!layer) return [];
      const ids = new Set(map.queryRenderedFeatures({ layers: styleIds(name) }).map((f) => f.id));
      return [...ids];
    },
  };
})();
