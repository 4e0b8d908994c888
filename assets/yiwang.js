/*
 * Yiwang browser helpers, served from assets/ (no CDN).
 *  - window.yiwang.map.*: functional props of dash-leaflet GeoJSON layers, referenced from
 *    Python as {"variable": "yiwang.map.style"}; they read `context.hideout`.
 *  - window.dash_clientside.yiwang.*: clientside callbacks (clock, active navigation link).
 *  - a 401 from a Dash request (session ended or user disabled) sends the user to /login.
 */
(function () {
  "use strict";

  var RAMP = ["#0d2747", "#0f3d6b", "#125a92", "#1779b5", "#2699d3", "#3cb8ea", "#64d6fb"];

  function rampColour(t) {
    var i = Math.max(0, Math.min(RAMP.length - 1, Math.round(t * (RAMP.length - 1))));
    return RAMP[i];
  }

  function density(p) {
    return p && p.population && p.area_km2 ? p.population / p.area_km2 : 0;
  }

  function hideoutOf(context) {
    return (context && context.hideout) || {};
  }

  window.yiwang = Object.assign({}, window.yiwang, {
    map: {
      style: function (feature, context) {
        var h = hideoutOf(context);
        var t = Math.min(1, density(feature.properties) / (h.maxDensity || 1));
        return {
          color: "#5fd8ff", weight: 1.5, opacity: 0.95,
          fillColor: rampColour(Math.sqrt(t)), fillOpacity: 0.62,
        };
      },
      hoverStyle: function () {
        return { color: "#ffd166", weight: 3, fillOpacity: 0.8 };
      },
      onEachFeature: function (feature, layer, context) {
        var h = hideoutOf(context);
        var p = feature.properties || {};
        var name = h.lang === "en" ? (p.name_en || p.name_zh) : p.name_zh;
        layer.bindTooltip(String(name || ""), {
          permanent: true, direction: "center", className: "yw-map-label", interactive: false,
        });
      },
    },
  });

  function span(text, className) {
    return {
      type: "Span", namespace: "dash_html_components",
      props: { children: text, className: className },
    };
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    yiwang: {
      clock: function (_n, locale) {
        var lang = locale === "en" ? "en-GB" : "zh-CN";
        var now = new Date();
        // the city's time (China Standard Time, as the server's local days and stamps),
        // whatever zone the wall screen's own computer is set to
        var zone = "Asia/Shanghai";
        var day = now.toLocaleDateString(lang, {
          year: "numeric", month: "2-digit", day: "2-digit", timeZone: zone,
        }) + " " + now.toLocaleDateString(lang, { weekday: "long", timeZone: zone });
        var time = now.toLocaleTimeString(lang, { hour12: false, timeZone: zone });
        return [span(time, "yw-clock-time"), span(day, "yw-clock-date")];
      },
      activeNav: function (pathname) {
        var outs = window.dash_clientside.callback_context.outputs_list || [];
        if (outs.length && Array.isArray(outs[0])) {
          outs = outs[0];
        }
        return outs.map(function (o) {
          var path = o.id.path;
          var active = path === "/" ? pathname === "/" : pathname.indexOf(path) === 0;
          return active ? "yw-nav-link active" : "yw-nav-link";
        });
      },
    },
  });

  var realFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    return realFetch(input, init).then(function (response) {
      var url = typeof input === "string" ? input : (input && input.url) || "";
      if (response.status === 401 && url.indexOf("/_dash-") !== -1) {
        var back = window.location.pathname + window.location.search;
        window.location.assign("/login?next=" + encodeURIComponent(back));
      }
      return response;
    });
  };
})();
