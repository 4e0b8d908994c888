/*
 * The indicators page (驾驶舱), served from assets/ (no CDN).
 *  - window.yiwang.ind.*: functional props of the choropleth (dash-leaflet GeoJSON): the fill
 *    comes from the server (feature.properties.fill); hideout.selected outlines one area;
 *    hovering an area tells the server (dcc.Store "ind-hover") so the charts highlight it.
 *  - window.dash_clientside.yiwang_ind.syncUrl: writes the view's state into the address bar
 *    with history.replaceState, so a copied link reopens the same view, without re-routing.
 */
(function () {
  "use strict";

  function hideoutOf(context) {
    return (context && context.hideout) || {};
  }

  function escapeHtml(text) {
    return String(text == null ? "" : text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  window.yiwang = window.yiwang || {};
  window.yiwang.ind = {
    style: function (feature, context) {
      var p = feature.properties || {};
      var selected = hideoutOf(context).selected === p.code;
      return {
        color: selected ? "#ffd166" : "#9fe6ff", weight: selected ? 4 : 1.2, opacity: 0.95,
        fillColor: p.fill || "#3a4a63", fillOpacity: selected ? 0.88 : 0.66,
      };
    },
    onEachFeature: function (feature, layer, context) {
      var h = hideoutOf(context);
      var p = feature.properties || {};
      var name = h.lang === "en" ? (p.name_en || p.name_zh) : p.name_zh;
      layer.bindTooltip(
        escapeHtml(name) + '<br><span class="yw-ind-label-value">' + escapeHtml(p.label) +
          "</span>",
        { permanent: true, direction: "center", className: "yw-map-label yw-ind-label",
          interactive: false }
      );
    },
    mouseover: function (e) {
      var layer = e && (e.layer || e.propagatedFrom || e.target);
      var p = layer && layer.feature && layer.feature.properties;
      var dc = window.dash_clientside;
      if (p && p.code && dc && dc.set_props) {
        dc.set_props("ind-hover", { data: p.code });
      }
    },
  };

  window.dash_clientside = window.dash_clientside || {};
  window.dash_clientside.yiwang_ind = {
    syncUrl: function (search) {
      if (search && window.location.search !== search) {
        window.history.replaceState(window.history.state, "", window.location.pathname + search);
      }
      return "";
    },
  };
})();
