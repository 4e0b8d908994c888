/*
 * Map layers and the wall screen, served from assets/ (no CDN).
 *  - window.yiwang.layers.*: functional props of the layers declared in layers/ (Python names
 *    them as {"variable": "yiwang.layers.<fn>"}): styles, pointToLayer, clusterToLayer,
 *    tooltips. Points are circle markers and clusters div icons: no marker images to fetch.
 *  - window.yiwang.layers.wallMoved: map event handler sending the view (bbox, zoom) to the
 *    server through dash_clientside.set_props, only when it changed.
 *  - window.dash_clientside.yiwangLayers.*: wall rotation and server liveness.
 * Loaded before yiwang.js (alphabetical); both merge into window.yiwang.
 */
(function () {
  "use strict";

  var STATE = { normal: "#37d67a", warning: "#ffb020", alarm: "#ff4d4f", offline: "#6b7a90" };
  var PRIORITY = { emergency: "#ff4d4f", high: "#ff8a3d", normal: "#4fc3f7", low: "#8fa3bf" };
  var LEVEL = { warning: "#ffb020", alarm: "#ff4d4f" };
  var CHORO = ["#0d2747", "#0f3d6b", "#125a92", "#1779b5", "#2699d3", "#3cb8ea", "#64d6fb"];
  var HEAT = ["#3b1d5e", "#5a2277", "#7f2a7f", "#a8327a", "#cf4569", "#ef5f4f", "#ff6b3d"];
  var NAMES = {
    zh_CN: {
      normal: "正常", warning: "预警", alarm: "告警", offline: "离线",
      emergency: "紧急", high: "高", low: "低", overdue: "已超时", reports: "条诉求",
      reported: "受理", dispatched: "派单", claimed: "签收", in_progress: "办理",
      resolved: "办结", verified: "核查", returned: "退单", reopened: "重办",
    },
    en: {
      normal: "normal", warning: "warning", alarm: "alarm", offline: "offline",
      emergency: "emergency", high: "high", low: "low", overdue: "overdue",
      reports: "reports", reported: "reported", dispatched: "dispatched", claimed: "claimed",
      in_progress: "in progress", resolved: "resolved", verified: "verified",
      returned: "returned", reopened: "reopened",
    },
  };

  // markers grow with the screen: 1 at 1080 lines, 2 on a 3840×2160 wall
  function scale() {
    return Math.max(1, Math.min(3, (window.innerHeight || 1080) / 1080));
  }

  function hide(context) {
    return (context && context.hideout) || {};
  }

  function word(context, key) {
    var table = NAMES[hide(context).lang] || NAMES.zh_CN;
    return table[key] || key;
  }

  function ramp(colours, t) {
    var i = Math.max(0, Math.min(colours.length - 1, Math.round(t * (colours.length - 1))));
    return colours[i];
  }

  function escapeHtml(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function countIcon(latlng, n, colour, extra) {
    var size = Math.round((26 + 9 * Math.log10(Math.max(1, n))) * scale());
    var html = '<div style="--c:' + colour + ';font-size:' + Math.round(13 * scale()) +
      'px"><span>' + (n >= 10000 ?
      Math.round(n / 1000) + "k" : n) + "</span></div>";
    return L.marker(latlng, {
      icon: L.divIcon({ html: html, className: "yw-count " + (extra || ""),
                        iconSize: L.point(size, size) }),
      keyboard: false,
    });
  }

  function worst(p) {
    if (p.a) { return "alarm"; }
    if (p.w) { return "warning"; }
    if (p.o && p.o === p.n) { return "offline"; }
    return "normal";
  }

  function tip(layer, html) {
    layer.bindTooltip(html, { direction: "top", className: "yw-layer-tip", opacity: 0.95 });
  }

  var layers = {
    // jurisdiction polygons: indicator choropleth when values are given, outline otherwise
    choroplethStyle: function (feature, context) {
      var h = hide(context);
      var v = h.values ? h.values[feature.properties.code] : undefined;
      var base = { color: "#5fd8ff", weight: 1.4, opacity: 0.9, fillColor: "#0b2141",
                   fillOpacity: 0.35 };
      if (v === undefined || v === null) { return base; }
      var span = (h.max - h.min) || 1;
      base.fillColor = ramp(CHORO, (v - h.min) / span);
      base.fillOpacity = 0.7;
      return base;
    },
    jurisdictionLabel: function (feature, layer, context) {
      var h = hide(context);
      var p = feature.properties || {};
      if (!h.labels) { return; }
      var name = h.lang === "en" ? (p.name_en || p.name_zh) : p.name_zh;
      layer.bindTooltip(escapeHtml(name), {
        permanent: true, direction: "center", className: "yw-map-label", interactive: false,
      });
    },
    // sensors by state
    sensorStyle: function () { return {}; },
    sensorPoint: function (feature, latlng) {
      var p = feature.properties;
      if (p.n !== undefined) { return countIcon(latlng, p.n, STATE[worst(p)], "yw-cell"); }
      return L.circleMarker(latlng, {
        radius: 6 * scale(), color: "#06101f", weight: 1,
        fillColor: STATE[p.s] || STATE.offline,
        fillOpacity: p.s === "offline" ? 0.6 : 0.95,
      });
    },
    sensorTip: function (feature, layer, context) {
      var p = feature.properties;
      var h = hide(context);
      if (p.n !== undefined) {
        tip(layer, p.n + " · " + word(context, "alarm") + " " + (p.a || 0) + " · " +
          word(context, "warning") + " " + (p.w || 0) + " · " + word(context, "offline") +
          " " + (p.o || 0));
        return;
      }
      var kind = (h.kinds && h.kinds[p.k]) || p.k;
      tip(layer, escapeHtml(kind) + " #" + p.id + "<br>" + word(context, p.s) +
        (p.v !== undefined ? " · " + p.v : ""));
    },
    // incidents by priority (fill) and status; overdue gets a white ring
    incidentStyle: function () { return {}; },
    incidentPoint: function (feature, latlng) {
      var p = feature.properties;
      if (p.n !== undefined) {
        return countIcon(latlng, p.n, p.e ? PRIORITY.emergency : p.hi ? PRIORITY.high :
          PRIORITY.normal, "yw-cell" + (p.od ? " yw-overdue" : ""));
      }
      return L.circleMarker(latlng, {
        radius: (p.p === "emergency" ? 8 : 6) * scale(), color: p.od ? "#ffffff" : "#06101f",
        weight: p.od ? 2.5 : 1, fillColor: PRIORITY[p.p] || PRIORITY.normal,
        fillOpacity: p.s === "resolved" || p.s === "verified" ? 0.45 : 0.95,
      });
    },
    incidentTip: function (feature, layer, context) {
      var p = feature.properties;
      var h = hide(context);
      if (p.n !== undefined) {
        tip(layer, p.n + " · " + word(context, "emergency") + " " + (p.e || 0) + " · " +
          word(context, "overdue") + " " + (p.od || 0));
        return;
      }
      var cat = (h.categories && h.categories[p.c]) || p.c;
      tip(layer, "#" + p.id + " " + escapeHtml(cat) + "<br>" + word(context, p.p) + " · " +
        word(context, p.s) + (p.od ? " · " + word(context, "overdue") : ""));
    },
    // active alerts: pulsing rings
    alertStyle: function () { return {}; },
    alertPoint: function (feature, latlng) {
      var p = feature.properties;
      if (p.n !== undefined) {
        return countIcon(latlng, p.n, p.a ? LEVEL.alarm : LEVEL.warning, "yw-cell yw-pulse");
      }
      return L.circleMarker(latlng, {
        radius: 12 * scale(), color: LEVEL[p.l] || LEVEL.warning, weight: 3, fill: false,
        className: "yw-alert-ring",
      });
    },
    alertTip: function (feature, layer, context) {
      var p = feature.properties;
      var h = hide(context);
      if (p.n !== undefined) {
        tip(layer, p.n + " · " + word(context, "alarm") + " " + (p.a || 0));
        return;
      }
      var kind = (h.kinds && h.kinds[p.k]) || p.k;
      tip(layer, escapeHtml(kind) + "<br>" + word(context, p.l) +
        (p.v !== undefined ? " · " + p.v : ""));
    },
    // citizen report density: square cells, colour by share of the busiest cell
    densityStyle: function () { return {}; },
    densityCell: function (feature, latlng) {
      var p = feature.properties;
      var h = p.h || 0.005;
      return L.rectangle([[latlng.lat - h, latlng.lng - h], [latlng.lat + h, latlng.lng + h]], {
        stroke: false, fillColor: ramp(HEAT, p.t || 0), fillOpacity: 0.25 + 0.5 * (p.t || 0),
      });
    },
    densityTip: function (feature, layer, context) {
      tip(layer, feature.properties.n + " " + word(context, "reports"));
    },
    // client clusters (supercluster) look like server cells
    clusterIcon: function (feature, latlng) {
      return countIcon(latlng, feature.properties.point_count, "#3cc8ff", "yw-cluster");
    },
    // the wall map tells the server what it shows (only when that changed)
    wallMoved: function (e) {
      var map = e.target;
      if (!map || !map.getBounds || !window.dash_clientside ||
          !window.dash_clientside.set_props) { return; }
      var b = map.getBounds();
      var r = function (x) { return Math.round(x * 1e4) / 1e4; };
      var view = { bbox: [r(b.getWest()), r(b.getSouth()), r(b.getEast()), r(b.getNorth())],
                   zoom: Math.round(map.getZoom() * 100) / 100 };
      var key = JSON.stringify(view);
      if (key === map._ywLastView) { return; }
      map._ywLastView = key;
      window.yiwangWallMap = map;
      window.dash_clientside.set_props("wall-viewport", { data: view });
    },
  };

  window.yiwang = Object.assign({}, window.yiwang, { layers: layers });

  // Every Leaflet map follows its container's size. Leaflet only watches the window; a map
  // created while its grid cell was still settling (fonts, charts, a slow first render) kept
  // the size it saw, so its SVG renderer clipped the polygons to a strip of that size and the
  // map drew black or empty areas. A ResizeObserver calls invalidateSize on each change and,
  // unless the user has moved the map since, fits again the bounds the page last asked for.
  function followContainer() {
    var map = this;
    if (!window.ResizeObserver || map._ywResize) { return; }
    var fit = map.fitBounds, fly = map.flyToBounds, pending = 0;
    map.fitBounds = function (bounds, options) {
      map._ywFit = [bounds, options];
      return fit.apply(map, arguments);
    };
    map.flyToBounds = function (bounds, options) {
      map._ywFit = [bounds, options];
      return fly.apply(map, arguments);
    };
    var container = map.getContainer();
    ["wheel", "dblclick", "keydown", "touchstart"].forEach(function (type) {
      container.addEventListener(type, function () { map._ywFit = null; }, { passive: true });
    });
    map.on("dragstart", function () { map._ywFit = null; });
    map._ywResize = new window.ResizeObserver(function () {
      if (pending) { return; }
      pending = window.requestAnimationFrame(function () {
        pending = 0;
        if (!map._loaded || !container.isConnected) { return; }
        var before = map.getSize();
        map.invalidateSize({ pan: false });   // fires moveend: the renderer redraws
        var after = map.getSize();
        if (map._ywFit && after.x > 0 && after.y > 0 && !after.equals(before)) {
          fit.call(map, map._ywFit[0],
                   Object.assign({}, map._ywFit[1] || {}, { animate: false }));
        }
      });
    });
    map._ywResize.observe(container);
    map.on("unload", function () { map._ywResize.disconnect(); });
  }

  (function hookMaps(tries) {
    var L = window.L;
    if (L && L.Map && L.Map.addInitHook) {
      if (!L.Map._ywFollows) { L.Map._ywFollows = true; L.Map.addInitHook(followContainer); }
    } else if (tries < 400) {
      window.setTimeout(function () { hookMaps(tries + 1); }, 25);
    }
  })(0);

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    yiwangLayers: {
      wallRotate: function (_n, config, current) {
        var views = (config && config.views) || [];
        if (!views.length) { return window.dash_clientside.no_update; }
        var i = views.indexOf(current);
        return views[(i + 1) % views.length];
      },
      // ask for a refresh only when the last one answered (the counter moved) or 30 s passed
      wallTick: function (n, seq) {
        var gate = window.yiwangWallGate;
        var now = Date.now();
        if (gate && gate.page === document.getElementById("wall-root") && gate.seq === seq &&
            now - gate.sent < 30000) {
          return window.dash_clientside.no_update;
        }
        window.yiwangWallGate = { seq: seq, sent: now,
                                  page: document.getElementById("wall-root") };
        return n;
      },
      // the server answered when the refresh counter moved; silent for 3 refreshes (≥ 15 s)
      wallOnline: function (_n, seq, config) {
        var st = window.yiwangWallState;
        if (!st || st.page !== document.getElementById("wall-root")) {
          st = window.yiwangWallState = { seq: seq, seen: Date.now(),
                                          page: document.getElementById("wall-root") };
        }
        if (seq !== st.seq) { st.seq = seq; st.seen = Date.now(); }
        var limit = Math.max(3 * ((config && config.refresh) || 10) * 1000, 15000);
        return Date.now() - st.seen > limit ? "yw-wall-offline show" : "yw-wall-offline";
      },
    },
  });
})();
