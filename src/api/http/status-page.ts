// The status page: one self-contained HTML document (no external requests, so it works
// offline and from a FROM scratch image). It polls /status.json every second and draws
// the charts as SVG. Text from the server is set with textContent, never as HTML.
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>strata status</title>
<style>
  :root {
    --bg: #f6f7f9; --card: #fff; --text: #1d2330; --muted: #677084; --line: #e3e6ec;
    --ok: #1f9d55; --bad: #d64545; --accent: #3b6fd8; --accent2: #e0862b;
    font-family: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
    font-size: 14px; color: var(--text); background: var(--bg);
  }
  @media (prefers-color-scheme: dark) {
    :root { --bg: #14171d; --card: #1c2028; --text: #e4e7ee; --muted: #98a0b3; --line: #2c323d; --accent: #6d9bff; --accent2: #f2a55a; }
  }
  body { margin: 0; padding: 24px 32px 40px; }
  header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; margin-bottom: 20px; }
  h1 { font-size: 22px; margin: 0; letter-spacing: -0.01em; }
  h2 .url { text-transform: none; letter-spacing: 0; font-weight: 400; margin-left: 8px; }
  h2 { font-size: 13px; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); margin: 0 0 12px; font-weight: 600; }
  .facts { display: flex; gap: 20px; flex-wrap: wrap; color: var(--muted); }
  .facts b { color: var(--text); font-weight: 600; font-variant-numeric: tabular-nums; }
  .pill { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 12px; font-weight: 600; color: #fff; background: var(--muted); }
  .pill.ok { background: var(--ok); } .pill.bad { background: var(--bad); }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; margin-bottom: 18px; }
  table { width: 100%; border-collapse: collapse; }
  th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; padding: 6px 10px; border-bottom: 1px solid var(--line); }
  td { padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
  tr:last-child td { border-bottom: none; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .url { color: var(--muted); font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
  .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px; background: var(--muted); }
  .dot.ok { background: var(--ok); } .dot.bad { background: var(--bad); }
  .err { color: var(--bad); font-size: 12px; margin-top: 2px; }
  .tag { font-size: 11px; color: var(--accent); border: 1px solid var(--accent); border-radius: 4px; padding: 0 5px; margin-left: 6px; }
  ol.routes { margin: 0; padding: 0; list-style: none; }
  ol.routes li { display: flex; gap: 10px; align-items: baseline; padding: 7px 0; border-bottom: 1px solid var(--line); }
  ol.routes li:last-child { border-bottom: none; }
  .n { color: var(--muted); width: 28px; text-align: right; font-variant-numeric: tabular-nums; }
  .match { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
  .arrow { color: var(--muted); }
  .target { font-weight: 600; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 18px; }
  .chart h3 { margin: 0; font-size: 13px; font-weight: 600; color: var(--muted); }
  .chart .now { font-size: 24px; font-weight: 600; margin: 4px 0 6px; font-variant-numeric: tabular-nums; }
  .chart .now small { font-size: 13px; color: var(--muted); font-weight: 400; margin-left: 4px; }
  .legend { display: flex; gap: 14px; font-size: 12px; color: var(--muted); margin-bottom: 4px; }
  .legend i { display: inline-block; width: 12px; height: 3px; border-radius: 2px; vertical-align: middle; margin-right: 5px; }
  svg { width: 100%; height: 150px; display: block; overflow: visible; }
  svg text { fill: var(--muted); font-size: 10px; }
  svg .grid { stroke: var(--line); stroke-width: 1; }
  svg .s0 { stroke: var(--accent); } svg .s1 { stroke: var(--accent2); }
  svg .d0 { fill: var(--accent); } svg .d1 { fill: var(--accent2); }
  svg path { fill: none; stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; vector-effect: non-scaling-stroke; }
  footer { color: var(--muted); font-size: 12px; }
  footer a { color: var(--accent); margin-right: 14px; text-decoration: none; }
  #problem, #nospace { display: none; }
</style>
</head>
<body>
<header>
  <h1>strata <span id="name"></span></h1>
  <span id="overall" class="pill">loading</span>
  <div class="facts">
    <span>version <b id="version">-</b> <small>commit</small> <b id="commit">-</b></span>
    <span>revision <b id="revision">-</b></span>
    <span>compacted at <b id="compact">-</b></span>
    <span>up <b id="uptime">-</b></span>
  </div>
</header>
<div id="problem" class="card err"></div>
<div id="nospace" class="card err"></div>

<section class="card">
  <h2>Backends</h2>
  <table>
    <thead><tr><th>Backend</th><th>Health</th><th class="num">Keys</th><th class="num">Size</th><th class="num">Quota used</th><th class="num">Check</th></tr></thead>
    <tbody id="backends"></tbody>
  </table>
</section>

<section class="card">
  <h2>Key prefixes</h2>
  <table>
    <thead><tr><th>Prefix (one per kube-apiserver, or tenant)</th><th>Backends</th><th class="num">Keys</th></tr></thead>
    <tbody id="prefixes"></tbody>
  </table>
</section>

<section class="card">
  <h2>Routing</h2>
  <ol class="routes" id="routes"></ol>
</section>

<section class="card">
  <h2>Live, last two minutes</h2>
  <div class="charts">
    <div class="chart"><h3>Requests per second</h3><div class="now" id="rate-now">-</div>
      <div class="legend"><span><i style="background:var(--accent)"></i>completed unary requests</span></div>
      <svg id="chart-rate" data-points="0"></svg></div>
    <div class="chart"><h3>Latency</h3><div class="now" id="latency-now">-</div>
      <div class="legend"><span><i style="background:var(--accent)"></i>p50</span><span><i style="background:var(--accent2)"></i>p99</span></div>
      <svg id="chart-latency" data-points="0"></svg></div>
    <div class="chart"><h3>Active watchers</h3><div class="now" id="watchers-now">-</div>
      <div class="legend"><span><i style="background:var(--accent)"></i>watchers</span><span id="streams"></span></div>
      <svg id="chart-watchers" data-points="0"></svg></div>
  </div>
</section>

<footer>
  <a href="metrics">/metrics</a><a href="readyz">/readyz</a><a href="healthz">/healthz</a><a href="status.json">/status.json</a>
  <span id="updated"></span>
</footer>

<script>
"use strict";
var WINDOW_MS = 120000;
var SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, children) {
  var e = document.createElement(tag);
  for (var k in attrs || {}) {
    if (k === "text") e.textContent = attrs[k];
    else e.setAttribute(k, attrs[k]);
  }
  (children || []).forEach(function (c) { if (c) e.appendChild(c); });
  return e;
}
function svg(tag, attrs) {
  var e = document.createElementNS(SVG, tag);
  for (var k in attrs) {
    if (k === "text") e.textContent = attrs[k];
    else e.setAttribute(k, attrs[k]);
  }
  return e;
}
function setText(id, text) { document.getElementById(id).textContent = text; }

function bytes(n) {
  if (n === undefined) return "-";
  var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}
function count(n) { return n === undefined ? "-" : n.toLocaleString("en-US"); }
function duration(s) {
  if (s < 60) return Math.floor(s) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + Math.floor(s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}
function ms(v) { return v === null || v === undefined ? "-" : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0); }

/** the smallest of 1, 2, 2.5, 5 times a power of ten that is at least v */
function niceMax(v) {
  if (!(v > 0)) return 1;
  var p = Math.pow(10, Math.floor(Math.log10(v)));
  var steps = [1, 2, 2.5, 5, 10];
  for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
  return 10 * p;
}

/** Draws series (arrays of {t, v}, v null for a gap) over the last WINDOW_MS. */
function drawChart(id, series, now, unit) {
  var root = document.getElementById(id);
  // drawn at the size shown, so text is not stretched
  var W = root.clientWidth || 600, H = 150, left = 44, bottom = 18;
  root.setAttribute("viewBox", "0 0 " + W + " " + H);
  while (root.firstChild) root.removeChild(root.firstChild);
  var max = 0, points = 0;
  series.forEach(function (s) { s.forEach(function (p) { if (p.v !== null && p.v > max) max = p.v; }); });
  max = niceMax(max);
  var x = function (t) { return left + (W - left) * (1 - (now - t) / WINDOW_MS); };
  var y = function (v) { return (H - bottom) * (1 - v / max) + 1; };
  [0, 0.5, 1].forEach(function (f) {
    var v = max * f;
    root.appendChild(svg("line", { x1: left, x2: W, y1: y(v), y2: y(v), "class": "grid" }));
    root.appendChild(svg("text", { x: left - 6, y: y(v) + 3, "text-anchor": "end", text: (v % 1 ? v.toFixed(1) : v) + unit }));
  });
  root.appendChild(svg("text", { x: left, y: H - 2, text: "-2m" }));
  root.appendChild(svg("text", { x: W, y: H - 2, "text-anchor": "end", text: "now" }));
  series.forEach(function (s, i) {
    var d = "";
    s.forEach(function (p, j) {
      if (now - p.t > WINDOW_MS || p.v === null) return;
      var before = s[j - 1], after = s[j + 1];
      var joined = before && before.v !== null && now - before.t <= WINDOW_MS;
      d += (joined ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.v).toFixed(1);
      // a point with gaps on both sides would draw nothing as a line
      if (!joined && !(after && after.v !== null)) root.appendChild(svg("circle", { cx: x(p.t), cy: y(p.v), r: 2.5, "class": "d" + i }));
      points++;
    });
    if (d) root.appendChild(svg("path", { d: d, "class": "s" + i }));
  });
  root.setAttribute("data-points", String(points));
}

// "12% of 2.0 GiB", or "none" for a database server that manages its own space
function quota(b) {
  if (!b.quotaBytes) return "none";
  if (b.sizeBytes === undefined) return "- of " + bytes(b.quotaBytes);
  return (100 * b.sizeBytes / b.quotaBytes).toFixed(b.sizeBytes * 1000 < b.quotaBytes ? 2 : 0) + "% of " + bytes(b.quotaBytes);
}

function renderBackends(st) {
  var body = document.getElementById("backends");
  body.textContent = "";
  st.backends.forEach(function (b) {
    var name = el("td", {}, [
      el("div", {}, [el("b", { text: b.name }), b.isDefault ? el("span", { "class": "tag", text: "default" }) : null]),
      el("div", { "class": "url", text: b.url }),
    ]);
    var health = el("td", { "class": "health" }, [
      el("span", { "class": "dot " + (b.healthy ? "ok" : "bad") }),
      document.createTextNode(b.healthy ? "healthy" : "failing"),
      b.error ? el("div", { "class": "err", text: b.error }) : null,
    ]);
    body.appendChild(el("tr", { "data-backend": b.name }, [
      name, health,
      el("td", { "class": "num keys", text: count(b.keys) }),
      el("td", { "class": "num size", text: bytes(b.sizeBytes) }),
      el("td", { "class": "num quota", text: quota(b) }),
      el("td", { "class": "num", text: b.checkMs + " ms" }),
    ]));
  });
}

function renderRoutes(st) {
  var list = document.getElementById("routes");
  list.textContent = "";
  st.routes.forEach(function (r, i) {
    list.appendChild(el("li", { "data-route": String(i + 1) }, [
      el("span", { "class": "n", text: (i + 1) + "." }),
      el("span", { "class": "match", text: r.match }),
      el("span", { "class": "arrow", text: "\\u2192" }),
      el("span", { "class": "target", text: r.backend }),
    ]));
  });
  list.appendChild(el("li", { "data-route": "default" }, [
    el("span", { "class": "n", text: "" }),
    el("span", { "class": "match", text: st.routes.length ? "any other key" : "every key" }),
    el("span", { "class": "arrow", text: "\\u2192" }),
    el("span", { "class": "target", text: st.default + " (default)" }),
  ]));
}

function renderPrefixes(st) {
  var body = document.getElementById("prefixes");
  body.textContent = "";
  st.keyPrefixes.forEach(function (p) {
    body.appendChild(el("tr", { "data-prefix": p.prefix }, [
      el("td", { "class": "url", text: p.prefix }),
      el("td", { "class": "backends", text: p.backends.join(", ") }),
      el("td", { "class": "num keys" }, [
        document.createTextNode(count(p.keys)),
        p.error ? el("div", { "class": "err", text: p.error }) : null,
      ]),
    ]));
  });
}

function render(st) {
  var now = st.timeline.length ? st.timeline[st.timeline.length - 1].t : Date.now();
  setText("name", st.name === "strata" ? "" : st.name);
  setText("version", st.version);
  setText("commit", st.commit);
  var nospace = document.getElementById("nospace");
  nospace.textContent = st.noSpace ? "writes refused (NOSPACE alarm): " + st.noSpace : "";
  nospace.style.display = st.noSpace ? "block" : "none";
  setText("revision", st.revision);
  setText("compact", st.compactRevision);
  setText("uptime", duration((Date.now() - Date.parse(st.startedAt)) / 1000));
  var failing = st.backends.filter(function (b) { return !b.healthy; }).length;
  var overall = document.getElementById("overall");
  overall.className = "pill " + (failing ? "bad" : "ok");
  overall.textContent = failing ? failing + " of " + st.backends.length + " backends failing" : "all backends healthy";
  renderBackends(st);
  renderPrefixes(st);
  renderRoutes(st);
  var tl = st.timeline;
  var last = tl[tl.length - 1] || {};
  // latency of the newest second that had requests
  var measured = tl.filter(function (p) { return p.p50 !== null; }).pop() || {};
  var pick = function (k) { return tl.map(function (p) { return { t: p.t, v: p[k] }; }); };
  drawChart("chart-rate", [pick("rate")], now, "");
  drawChart("chart-latency", [pick("p50"), pick("p99")], now, "ms");
  drawChart("chart-watchers", [pick("watchers")], now, "");
  document.getElementById("rate-now").textContent = last.rate === undefined ? "-" : last.rate.toFixed(last.rate < 10 ? 1 : 0);
  var lat = document.getElementById("latency-now");
  lat.textContent = ms(measured.p50) + " / " + ms(measured.p99);
  lat.appendChild(el("small", { text: "ms p50 / p99" }));
  setText("watchers-now", String(st.watchers));
  setText("streams", st.watchStreams + " watch streams");
  setText("updated", "updated " + new Date().toLocaleTimeString());
}

function poll() {
  fetch("status.json", { cache: "no-store" })
    .then(function (r) { if (!r.ok) throw new Error("status.json: HTTP " + r.status); return r.json(); })
    .then(function (st) {
      document.getElementById("problem").style.display = "none";
      render(st);
    })
    .catch(function (err) {
      var p = document.getElementById("problem");
      p.textContent = "cannot reach strata: " + err.message;
      p.style.display = "block";
    })
    .finally(function () { setTimeout(poll, 1000); });
}
poll();
</script>
</body>
</html>
`;
