"""The web page at ``GET /``: try the model in a browser and watch the server's numbers.

    open http://127.0.0.1:8000/        # after `dlhpc serve RUN`

One self-contained HTML document (no external assets, no CDN): for image models a drawing pad
and a file picker / drop zone, for text models a text box; either POSTs to ``/predict`` and shows
the top labels with their probabilities and the latency. Every second it reads ``/metrics``
(Prometheus text) and shows requests per second, p50/p99 latency, queue and compute time and
batch sizes over the last interval. A bearer token typed into the page is kept in the tab's
``sessionStorage`` and sent with every call; the page itself is open (it holds no model data
beyond the model's name and input kind). A strict Content-Security-Policy allows only this
page's own script and style (by hash) and requests to this server.

``?text=…`` (text models) fills the box and classifies it on load: a link that shows a result.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any

STYLE = """
:root { font: 15px/1.45 system-ui, sans-serif; color: #1d2430; background: #f4f6f9; }
body { margin: 0 auto; max-width: 980px; padding: 16px; }
header { display: flex; flex-wrap: wrap; gap: 12px; align-items: baseline; }
header h1 { font-size: 20px; margin: 0; }
header .model { font-weight: 600; color: #3a5f94; }
header label { margin-left: auto; font-size: 13px; }
main { display: grid; grid-template-columns: minmax(300px, 1fr) minmax(280px, 1fr); gap: 16px; }
@media (max-width: 720px) { main { grid-template-columns: 1fr; } }
section { background: #fff; border-radius: 8px; padding: 12px 16px;
          box-shadow: 0 1px 3px rgba(0, 0, 0, .08); }
h2 { font-size: 15px; margin: 0 0 8px; color: #4b5563; }
#pad { width: 280px; height: 280px; background: #000; border-radius: 6px; cursor: crosshair;
       touch-action: none; display: block; }
.drop { outline: 3px dashed #3a5f94; }
textarea { width: 100%; box-sizing: border-box; font: inherit; min-height: 120px; }
button, .file { font: inherit; padding: 4px 12px; margin: 6px 6px 0 0; cursor: pointer;
                border: 1px solid #9aa5b4; border-radius: 4px; background: #eef1f5;
                display: inline-block; }
.file input { display: none; }
.hint, #latency { color: #6b7280; font-size: 13px; }
#error { color: #b42318; font-size: 13px; min-height: 1em; }
.prediction { margin-bottom: 10px; }
.prediction .text { color: #6b7280; font-size: 13px; overflow-wrap: anywhere; }
.best { font-size: 28px; font-weight: 700; }
.top { list-style: none; margin: 4px 0; padding: 0; }
.top li { display: grid; grid-template-columns: 7em 1fr 4.5em; gap: 8px; align-items: center; }
.top .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { background: #e5e9f0; border-radius: 3px; height: 10px; }
.bar span { display: block; height: 100%; background: #4878a8; border-radius: 3px; }
.pct { text-align: right; font-variant-numeric: tabular-nums; }
#live { grid-column: 1 / -1; }
dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px;
     margin: 0; }
dl div { background: #f4f6f9; border-radius: 6px; padding: 6px 10px; }
dt { font-size: 12px; color: #6b7280; }
dd { margin: 0; font-size: 18px; font-variant-numeric: tabular-nums; }
#batches { display: flex; align-items: flex-end; gap: 4px; height: 70px; margin-top: 10px; }
#batches div { flex: 1; display: flex; flex-direction: column; justify-content: flex-end;
               height: 100%; font-size: 11px; text-align: center; color: #6b7280; }
#batches span { background: #7fa4cf; display: block; min-height: 1px; }
"""

BODY = """
<header>
  <h1>dlhpc serve</h1><span class="model" id="model"></span><span id="kind"></span>
  <label>Token <input id="token" type="password" autocomplete="off" size="14"></label>
</header>
<main>
  <section id="input-image" hidden>
    <h2>Draw, or drop an image</h2>
    <canvas id="pad" width="280" height="280"></canvas>
    <button id="clear" type="button">Clear</button>
    <label class="file">Choose image… <input id="file" type="file" accept="image/*"></label>
    <p class="hint">Draw with the mouse or a finger; it is classified when you lift it.</p>
  </section>
  <section id="input-text" hidden>
    <h2>Type a text (one per line)</h2>
    <textarea id="text" placeholder="Type here; it is classified as you type"></textarea>
    <button id="send" type="button">Classify</button>
    <p class="hint">Ctrl+Enter classifies now. Several lines are several texts.</p>
  </section>
  <section id="result">
    <h2>Prediction</h2>
    <div id="answer">–</div>
    <p id="latency"></p>
    <p id="error" role="alert"></p>
  </section>
  <section id="live">
    <h2>Server, last second <span id="live-state" class="hint"></span></h2>
    <dl>
      <div><dt>requests</dt><dd id="stat-requests">–</dd></div>
      <div><dt>requests / s</dt><dd id="stat-rps">–</dd></div>
      <div><dt>errors</dt><dd id="stat-errors">–</dd></div>
      <div><dt>latency p50 / p99</dt><dd id="stat-latency">–</dd></div>
      <div><dt>queue time (mean)</dt><dd id="stat-queue">–</dd></div>
      <div><dt>compute time (mean)</dt><dd id="stat-compute">–</dd></div>
      <div><dt>batch size (mean)</dt><dd id="stat-batch">–</dd></div>
      <div><dt>in flight</dt><dd id="stat-inflight">–</dd></div>
    </dl>
    <div id="batches" title="batch sizes (all time)"></div>
  </section>
</main>
"""

SCRIPT = r"""
"use strict";
const cfg = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);
const tokenBox = $("token");
tokenBox.value = sessionStorage.getItem("dlhpc-token") || "";
tokenBox.addEventListener("change", () => {
  sessionStorage.setItem("dlhpc-token", tokenBox.value.trim());
});
$("model").textContent = cfg.name;
$("kind").textContent = cfg.kind === "image"
  ? `image model, ${cfg.input.shape.slice(1).join("×")}` : "text model";

function headers(extra) {
  const h = Object.assign({}, extra);
  const token = tokenBox.value.trim();
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

const fmt = (x, digits) => (x === null || !isFinite(x) ? "–" : x.toFixed(digits));
let sentTexts = [];

async function predict(body, type) {
  const t0 = performance.now();
  try {
    const r = await fetch("/predict", {method: "POST", headers: headers({"Content-Type": type}),
                                       body});
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`${r.status}: ${answer.error || r.statusText}`);
    $("error").textContent = "";
    show(answer, performance.now() - t0);
  } catch (e) {
    $("error").textContent = String(e.message || e);
  }
}

function topList(probabilities, k) {
  const list = document.createElement("ol");
  list.className = "top";
  const top = Object.entries(probabilities).sort((a, b) => b[1] - a[1]).slice(0, k);
  for (const [label, p] of top) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = (100 * p).toFixed(1) + "%";
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = (100 * p).toFixed(1) + "%";
    li.append(name, bar, pct);
    list.append(li);
  }
  return list;
}

function show(answer, roundTripMs) {
  const out = $("answer");
  out.replaceChildren();
  const preds = answer.predictions || [answer];
  preds.forEach((p, i) => {
    const div = document.createElement("div");
    div.className = "prediction";
    if (preds.length > 1 && sentTexts[i] !== undefined) {
      const text = document.createElement("div");
      text.className = "text";
      text.textContent = sentTexts[i].slice(0, 120);
      div.append(text);
    }
    const best = document.createElement("div");
    best.className = "best";
    best.textContent = p.label;
    div.append(best, topList(p.probabilities, preds.length > 1 ? 3 : 5));
    out.append(div);
  });
  $("latency").textContent =
    `server ${fmt(answer.latency_ms, 2)} ms · round trip ${fmt(roundTripMs, 1)} ms`;
}

function setUpImage() {
  $("input-image").hidden = false;
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 22;
  ctx.lineCap = ctx.lineJoin = "round";
  let last = null;
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width,
            (e.clientY - r.top) * pad.height / r.height];
  };
  pad.addEventListener("pointerdown", (e) => {
    pad.setPointerCapture(e.pointerId);
    last = at(e);
    ctx.beginPath(); ctx.arc(last[0], last[1], ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fillStyle = "#fff"; ctx.fill();
  });
  pad.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = at(e);
    ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
    last = p;
  });
  const lift = () => {
    if (!last) return;
    last = null;
    pad.toBlob((blob) => predict(blob, "image/png"), "image/png");
  };
  pad.addEventListener("pointerup", lift);
  pad.addEventListener("pointercancel", lift);
  $("clear").addEventListener("click", () => { clear(); $("answer").textContent = "–"; });
  const sendFile = async (file) => {
    if (!file) return;
    try {
      const bitmap = await createImageBitmap(file);
      clear();
      ctx.drawImage(bitmap, 0, 0, pad.width, pad.height);
    } catch (e) { /* the server says what is wrong with it */ }
    predict(file, file.type || "application/octet-stream");
  };
  $("file").addEventListener("change", (e) => sendFile(e.target.files[0]));
  const zone = $("input-image");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("drop"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("drop"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("drop");
    sendFile(e.dataTransfer.files[0]);
  });
}

function setUpText() {
  $("input-text").hidden = false;
  const box = $("text");
  const send = () => {
    const texts = box.value.split(/\r?\n/).filter((t) => t.trim());
    if (!texts.length) return;
    sentTexts = texts;
    predict(JSON.stringify({texts}), "application/json");
  };
  let timer = null;
  box.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(send, 250); });
  box.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.ctrlKey) send(); });
  $("send").addEventListener("click", send);
  const given = new URLSearchParams(location.search).get("text");
  if (given) { box.value = given; send(); }
}

function parseMetrics(text) {
  const series = new Map();
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const kv of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    if (!series.has(m[1])) series.set(m[1], []);
    series.get(m[1]).push({labels, value: Number(m[3])});
  }
  return series;
}

const MODEL_PATHS = new Set(["/v2/models/{name}/infer", "/predict"]);
const sum = (s, name, keep) =>
  (s.get(name) || []).filter((x) => !keep || keep(x.labels)).reduce((a, x) => a + x.value, 0);

function buckets(s, name, keep) {
  const by = new Map();
  for (const x of s.get(name + "_bucket") || []) {
    if (keep && !keep(x.labels)) continue;
    const le = x.labels.le === "+Inf" ? Infinity : Number(x.labels.le);
    by.set(le, (by.get(le) || 0) + x.value);
  }
  return [...by.entries()].sort((a, b) => a[0] - b[0]);
}

function quantile(q, cumulative) {
  const total = cumulative.length ? cumulative[cumulative.length - 1][1] : 0;
  if (!total) return null;
  let prevLe = 0, prevCount = 0;
  for (const [le, count] of cumulative) {
    if (count >= q * total) {
      if (le === Infinity) return prevLe;
      return prevLe + (le - prevLe) * (q * total - prevCount) / Math.max(count - prevCount, 1e-9);
    }
    [prevLe, prevCount] = [le, count];
  }
  return prevLe;
}

const minus = (a, b) => a.map(([le, c], i) => [le, c - (b && b[i] ? b[i][1] : 0)]);

function summary(s) {
  const model = (l) => MODEL_PATHS.has(l.path);
  return {
    t: performance.now(),
    requests: sum(s, "dlhpc_requests_total", model),
    errors: sum(s, "dlhpc_requests_total", (l) => model(l) && !l.code.startsWith("2")),
    latency: buckets(s, "dlhpc_request_seconds", model),
    queue: [sum(s, "dlhpc_queue_seconds_sum"), sum(s, "dlhpc_queue_seconds_count")],
    compute: [sum(s, "dlhpc_compute_seconds_sum"), sum(s, "dlhpc_compute_seconds_count")],
    batch: [sum(s, "dlhpc_batch_size_sum"), sum(s, "dlhpc_batch_size_count")],
    sizes: buckets(s, "dlhpc_batch_size"),
    inflight: Math.max(0, sum(s, "dlhpc_in_flight_requests") - 1),  // - 1: this scrape
  };
}

function render(now, before) {
  const fresh = before && now.requests > before.requests;
  const window = fresh ? minus(now.latency, before.latency) : now.latency;
  const mean = (k) => {
    const [s, n] = fresh ? [now[k][0] - before[k][0], now[k][1] - before[k][1]] : now[k];
    return n > 0 ? s / n : null;
  };
  const seconds = before ? (now.t - before.t) / 1000 : null;
  $("live-state").textContent = fresh ? "" : "(idle: all-time numbers)";
  $("stat-requests").textContent = String(now.requests);
  $("stat-rps").textContent = seconds ? fmt((now.requests - before.requests) / seconds, 1) : "–";
  $("stat-errors").textContent = String(now.errors);
  const p50 = quantile(0.5, window), p99 = quantile(0.99, window);
  $("stat-latency").textContent =
    p50 === null ? "–" : `${fmt(1000 * p50, 1)} / ${fmt(1000 * p99, 1)} ms`;
  const q = mean("queue"), c = mean("compute");
  $("stat-queue").textContent = q === null ? "–" : `${fmt(1000 * q, 2)} ms`;
  $("stat-compute").textContent = c === null ? "–" : `${fmt(1000 * c, 2)} ms`;
  $("stat-batch").textContent = fmt(mean("batch"), 1);
  $("stat-inflight").textContent = String(now.inflight);
  const bars = $("batches");
  bars.replaceChildren();
  const counts = now.sizes.map(([le, n], i) => [le, n - (i ? now.sizes[i - 1][1] : 0)])
    .filter(([le]) => le !== Infinity);
  const most = Math.max(1, ...counts.map(([, n]) => n));
  for (const [le, n] of counts) {
    const col = document.createElement("div");
    const bar = document.createElement("span");
    bar.style.height = (60 * n / most).toFixed(1) + "px";
    col.title = `${n} batches of ≤ ${le}`;
    col.append(bar, "≤" + le);
    bars.append(col);
  }
}

let previous = null;
async function poll() {
  if (document.hidden) return;
  try {
    const r = await fetch("/metrics", {headers: headers({})});
    if (r.status === 401) { $("live-state").textContent = "(enter the token)"; return; }
    if (!r.ok) throw new Error(String(r.status));
    const now = summary(parseMetrics(await r.text()));
    render(now, previous);
    previous = now;
  } catch (e) {
    $("live-state").textContent = `(metrics unavailable: ${e.message || e})`;
  }
}

if (cfg.kind === "image") setUpImage(); else setUpText();
poll();
setInterval(poll, 1000);
"""


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


CSP = "; ".join([
    "default-src 'none'",
    f"script-src {_hash(SCRIPT)}",
    f"style-src {_hash(STYLE)}",
    "img-src data: blob:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])  # fmt: skip

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def render_page(name: str, kind: str, tensor: dict[str, Any]) -> bytes:
    """The page for model ``name`` of input ``kind`` ("image", "text"): its v2 input tensor."""
    config = json.dumps({"name": name, "kind": kind, "input": tensor})
    config = config.replace("<", "\\u003c")  # no "</script>" can end the data block early
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>dlhpc serve · {html.escape(name)}</title>\n"
        '<link rel="icon" href="data:,">\n'
        f"<style>{STYLE}</style>\n"
        f'<script type="application/json" id="config">{config}</script>\n'
        f"</head><body>{BODY}<script>{SCRIPT}</script>\n</body></html>\n"
    )
    return page.encode()
