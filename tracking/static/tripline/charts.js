/* Metric charts of the run and compare pages, drawn with uPlot (vendored beside this file).
 *
 * Each <figure class="metric"> holds its data as JSON: {key, series: [{run, label, url, step,
 * time, value, total, downsampled}], thresholds: [{value, label}], firings: [{step, value, label,
 * url}]}. The server sends the whole history downsampled (each bucket's min and max); zooming
 * refetches the visible range from the series' `url` at about two points per pixel, which is
 * every point once the range is small enough. Double-click goes back to the whole history.
 */
(function () {
  "use strict";
  if (typeof uPlot === "undefined") return;
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
  var controls = document.getElementById("chart-controls");
  var settings = { x: "step", log: false, smooth: 0 };
  var charts = [];

  function fmt(v) {
    if (v == null || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-4)) return v.toExponential(3);
    return String(+v.toPrecision(6));
  }

  function fmtDuration(s) {
    if (s == null) return "–";
    var sign = s < 0 ? "-" : "";
    s = Math.abs(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h) return sign + h + "h" + String(m).padStart(2, "0") + "m";
    if (m) return sign + m + "m" + String(Math.floor(sec)).padStart(2, "0") + "s";
    return sign + (+sec.toPrecision(3)) + "s";
  }

  function fmtTime(t) {
    return t == null ? "–" : new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
  }

  function formatX(v) {
    if (settings.x === "time") return fmtTime(v);
    if (settings.x === "relative") return fmtDuration(v);
    return v == null ? "–" : String(Math.round(v));
  }

  var X_LABELS = { step: "step", time: "time (UTC)", relative: "relative time" };

  // TensorBoard's smoothing: an exponential moving average, debiased at the start.
  function smooth(values, weight) {
    if (!weight) return values;
    var out = new Array(values.length), last = 0, n = 0;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v == null) { out[i] = null; continue; }
      last = last * weight + (1 - weight) * v;
      n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  function xsOf(chart, s, data) {
    if (settings.x === "step") return data.step;
    if (settings.x === "time") return data.time;
    var t0 = s.full.time.length ? s.full.time[0] : 0;
    return data.time.map(function (t) { return t - t0; });
  }

  // One [x, y] table per series, joined on x (uPlot.join fills the gaps with nulls).
  function aligned(chart) {
    var tables = chart.series.map(function (s) {
      var data = s.current, xs = xsOf(chart, s, data), ys = smooth(data.value, settings.smooth);
      if (settings.log) ys = ys.map(function (v) { return v != null && v > 0 ? v : null; });
      var order = xs.map(function (_, i) { return i; });
      for (var i = 1; i < xs.length; i++) if (xs[i] < xs[i - 1]) { order.sort(function (a, b) { return xs[a] - xs[b]; }); break; }
      return [order.map(function (i) { return xs[i]; }), order.map(function (i) { return ys[i]; })];
    });
    if (tables.length === 1) return tables[0];
    return uPlot.join(tables);
  }

  // The first index of sorted `array` whose value is >= x.
  function lowerBound(array, x) {
    var lo = 0, hi = array.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (array[mid] < x) lo = mid + 1; else hi = mid; }
    return lo;
  }

  // The step range of a series' full data shown in the x range [min, max].
  function stepRange(chart, s, min, max) {
    if (settings.x === "step") return [Math.floor(min), Math.ceil(max)];
    var full = s.full, xs = xsOf(chart, s, full);
    var i = Math.max(0, lowerBound(xs, min) - 1), j = Math.min(xs.length - 1, lowerBound(xs, max));
    if (!xs.length) return null;
    return [full.step[i], full.step[j]];
  }

  function markX(chart, f) {
    if (settings.x === "step") return f.step;
    var full = chart.series[0].full, i = Math.min(full.step.length - 1, lowerBound(full.step, f.step));
    if (i < 0) return null;
    var t = full.time[i];
    return settings.x === "time" ? t : t - full.time[0];
  }

  function drawMarks(chart) {
    return function (u) {
      var ctx = u.ctx, box = u.bbox, ratio = devicePixelRatio || 1;
      ctx.save();
      ctx.font = 11 * ratio + "px system-ui, sans-serif";
      chart.spec.thresholds.forEach(function (t) {
        if (settings.log && t.value <= 0) return;
        var y = u.valToPos(t.value, "y", true);
        if (y < box.top || y > box.top + box.height) return;
        ctx.strokeStyle = ctx.fillStyle = "#dc2626";
        ctx.setLineDash([5 * ratio, 4 * ratio]);
        ctx.lineWidth = ratio;
        ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.left + box.width, y); ctx.stroke();
        ctx.textAlign = "right";
        ctx.fillText(t.label + " (" + fmt(t.value) + ")", box.left + box.width - 4, y - 4);
      });
      ctx.setLineDash([]);
      chart.marks = [];
      chart.spec.firings.forEach(function (f) {
        var xv = markX(chart, f);
        if (xv == null || f.value == null || (settings.log && f.value <= 0)) return;
        var x = u.valToPos(xv, "x", true), y = u.valToPos(f.value, "y", true);
        if (x < box.left || x > box.left + box.width || y < box.top || y > box.top + box.height) return;
        ctx.fillStyle = "#f59e0b"; ctx.strokeStyle = "#92400e"; ctx.lineWidth = ratio;
        ctx.beginPath(); ctx.arc(x, y, 5 * ratio, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
        chart.marks.push({ x: x / ratio - u.bbox.left / ratio, y: y / ratio - u.bbox.top / ratio, f: f });
      });
      ctx.restore();
    };
  }

  function readout(chart) {
    return function (u) {
      var i = u.cursor.idx, el = chart.figure.querySelector(".readout");
      if (i == null) { el.textContent = ""; return; }
      var parts = [X_LABELS[settings.x] + " " + formatX(u.data[0][i])];
      chart.series.forEach(function (s, k) {
        parts.push((chart.series.length > 1 ? s.label : chart.spec.key) + " " + fmt(u.data[k + 1][i]));
      });
      var near = (chart.marks || []).filter(function (m) { return Math.abs(m.x - u.cursor.left) < 7 && Math.abs(m.y - u.cursor.top) < 7; })[0];
      if (near) parts.push("fired: " + near.f.label + " (click to open)");
      el.textContent = parts.join(" · ");
    };
  }

  function onScale(chart) {
    return function (u, key) {
      if (key !== "x" || chart.resetting) return;
      clearTimeout(chart.timer);
      chart.timer = setTimeout(function () { refetch(chart, u.scales.x.min, u.scales.x.max); }, 60);
    };
  }

  function refetch(chart, min, max) {
    if (min == null || max == null) return;
    var xs = chart.plot.data[0];
    if (!xs.length || (min <= xs[0] && max >= xs[xs.length - 1] && chart.series.every(function (s) { return s.current === s.full; }))) return;
    var samples = Math.max(2, Math.min(10000, Math.round(chart.plot.bbox.width / (devicePixelRatio || 1)) * 2));
    var seq = ++chart.seq;
    var wanted = chart.series.map(function (s) {
      if (!s.full.downsampled) return null;  // every point is here already
      var range = stepRange(chart, s, min, max);
      if (!range) return null;
      var url = s.url + "?key=" + encodeURIComponent(chart.spec.key) + "&min_step=" + range[0] + "&max_step=" + range[1] + "&samples=" + samples;
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) { return { s: s, data: data, range: range }; });
    }).filter(Boolean);
    if (!wanted.length) return;
    chart.figure.dataset.loading = "1";
    Promise.all(wanted).then(function (results) {
      if (seq !== chart.seq) return;  // a newer zoom or a reset came first
      results.forEach(function (r) { r.s.current = r.data; });
      var scale = chart.plot.scales.x, keepMin = scale.min, keepMax = scale.max;
      chart.resetting = true;
      chart.plot.setData(aligned(chart), false);
      chart.plot.setScale("x", { min: keepMin, max: keepMax });
      chart.resetting = false;
      var f = chart.figure.dataset;
      f.fetches = String(+(f.fetches || 0) + 1);
      f.range = results[0].range[0] + "-" + results[0].range[1];
      f.points = String(results.reduce(function (n, r) { return n + r.data.step.length; }, 0));
      f.downsampled = String(results.some(function (r) { return r.data.downsampled; }));
      delete f.loading;
    }).catch(function (error) {
      chart.figure.querySelector(".readout").textContent = "Could not load the zoomed range (" + error.message + ").";
      delete chart.figure.dataset.loading;
    });
  }

  // The page's downsampled whole history comes without times (charts by step do not need them):
  // a time x-axis fetches them once.
  function withTimes(chart) {
    return Promise.all(chart.series.map(function (s) {
      if (s.full.time) return null;
      var url = s.url + "?key=" + encodeURIComponent(chart.spec.key) + "&samples=" + chart.spec.samples;
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) { s.full = data; s.current = data; });
    }));
  }

  function reset(chart) {
    chart.seq++;
    chart.series.forEach(function (s) { s.current = s.full; });
    chart.resetting = true;
    chart.plot.setData(aligned(chart), true);
    chart.resetting = false;
    var f = chart.figure.dataset;
    f.range = "all";
    f.points = String(chart.series.reduce(function (n, s) { return n + s.full.step.length; }, 0));
  }

  function width(chart) {
    return Math.max(300, chart.figure.clientWidth - 20);
  }

  function build(chart) {
    if (chart.plot) chart.plot.destroy();
    var series = [{ label: X_LABELS[settings.x], value: function (u, v) { return formatX(v); } }];
    chart.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, points: { show: false }, spanGaps: true,
                    value: function (u, v) { return fmt(v); } });
    });
    var opts = {
      width: width(chart), height: 260,
      scales: { x: { time: settings.x === "time" }, y: { distr: settings.log ? 3 : 1 } },
      axes: [
        { label: X_LABELS[settings.x], values: settings.x === "relative" ? function (u, splits) { return splits.map(fmtDuration); } : undefined },
        { label: chart.spec.key, size: 60, values: function (u, splits) { return splits.map(fmt); } },
      ],
      series: series,
      legend: { show: chart.series.length > 1, live: true },
      cursor: { drag: { x: true, y: false, setScale: true },
                bind: { dblclick: function () { return function () { reset(chart); return null; }; } } },
      hooks: { draw: [drawMarks(chart)], setScale: [onScale(chart)], setCursor: [readout(chart)] },
    };
    chart.plot = new uPlot(opts, aligned(chart), chart.figure.querySelector(".plot"));
    chart.figure.uplot = chart.plot;  // for whoever scripts the page (the browser tests)
    chart.figure.dataset.x = settings.x;
    chart.figure.classList.add("drawn");
  }

  document.querySelectorAll("figure.metric").forEach(function (figure) {
    var script = figure.querySelector('script[type="application/json"]');
    if (!script) return;
    var spec = JSON.parse(script.textContent);
    if (!spec.series.some(function (s) { return s.step.length; })) return;
    var chart = { figure: figure, spec: spec, seq: 0, series: spec.series.map(function (s) { return { label: s.label, url: s.url, full: s, current: s }; }) };
    build(chart);
    chart.plot.over.addEventListener("click", function (e) {
      var near = (chart.marks || []).filter(function (m) { return Math.abs(m.x - e.offsetX) < 7 && Math.abs(m.y - e.offsetY) < 7; })[0];
      if (near) window.location.href = near.f.url;
    });
    figure.dataset.range = "all";
    figure.dataset.fetches = "0";
    figure.dataset.points = String(spec.series.reduce(function (n, s) { return n + s.step.length; }, 0));
    charts.push(chart);
  });
  if (!charts.length) return;
  document.body.dataset.chartsDrawn = String(charts.length);
  // for the bench: milliseconds from the start of navigation to every chart drawn
  document.body.dataset.chartsDrawnAt = String(Math.round(performance.now()));

  if (controls) {
    controls.hidden = false;
    controls.addEventListener("change", function (e) {
      if (e.target.name !== "x" && e.target.name !== "log") return;
      var mode = controls.elements.x.value, log = controls.elements.log.checked;
      Promise.all(charts.map(function (c) { return mode === "step" ? null : withTimes(c); })).then(function () {
        settings.x = mode;
        settings.log = log;
        charts.forEach(function (c) { c.series.forEach(function (s) { s.current = s.full; }); c.seq++; build(c); });
      }).catch(function (error) {
        controls.elements.x.value = settings.x;
        charts[0].figure.querySelector(".readout").textContent = "Could not load the times (" + error.message + ").";
      });
    });
    controls.addEventListener("input", function (e) {
      if (e.target.name !== "smooth") return;
      settings.smooth = +e.target.value;
      controls.elements.smooth_out.value = e.target.value;
      charts.forEach(function (c) {
        var sx = c.plot.scales.x;
        c.resetting = true;
        c.plot.setData(aligned(c), false);
        c.plot.setScale("x", { min: sx.min, max: sx.max });
        c.resetting = false;
      });
    });
  }
  var resizeTimer;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { charts.forEach(function (c) { c.plot.setSize({ width: width(c), height: 260 }); }); }, 100);
  });
})();
