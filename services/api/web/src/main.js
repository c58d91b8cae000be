// The dashboard: wiring of the API client to the panels for the selected instrument and
// timeframe (kept in the URL: ?symbol=…&tf=…); the token from the URL fragment or a form.

import "./style.css";
import { forgetToken, get, Live, saveToken, storedToken, tokenFromFragment, Unauthorized } from "./api.js";
import { decimalsOf, frameTimes, panelTimes } from "./canvas.js";
import { buildShell, setPanelState, TIMEFRAMES } from "./layout.js";
import { DeltaChart, PriceChart } from "./panels/chart.js";
import { Footprint } from "./panels/footprint.js";
import { Heatmap } from "./panels/heatmap.js";
import { Ladder } from "./panels/ladder.js";
import { Profile } from "./panels/profile.js";
import { renderStatus, Signals } from "./panels/signals.js";
import { renderMicro, renderPerformance, renderScanner } from "./panels/tables.js";
import { Tape } from "./panels/tape.js";
import { TradeState } from "./panels/trade.js";

const CHANNELS = ["tick", "candle", "signal", "trade_state", "volume_profile", "bias", "orderbook", "delta", "stats"];
const STALE_MS = 15000;
const LIVE_PANELS = ["chart", "footprint", "tape", "heatmap"]; // the ones a stale feed marks
const $ = (id) => document.getElementById(id);

const metrics = { firstChartMs: null, frameTimes, panelTimes, messages: 0, errors: [] };
window.__of = metrics;

const S = { stale: false, symbol: "", tf: "1m", inst: null, instruments: [], gen: 0, lastTick: 0, decimals: 2, timers: [], profile: {}, bias: null, book: null };
let P = null;
let live = null;

function params() {
  const q = new URLSearchParams(location.search);
  return { symbol: q.get("symbol"), tf: TIMEFRAMES.includes(q.get("tf")) ? q.get("tf") : "1m" };
}

function writeURL() {
  const q = new URLSearchParams(location.search);
  q.set("symbol", S.symbol);
  q.set("tf", S.tf);
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

function askToken(reason = "") {
  const dlg = $("token-dialog");
  dlg.hidden = false;
  $("token-error").textContent = reason;
  $("token-input").focus();
}

async function main() {
  buildShell($("app"));
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    saveToken($("token-input").value.trim());
    $("token-dialog").hidden = true;
    start();
  });
  tokenFromFragment();
  if (!storedToken()) askToken();
  else start();
}

async function start() {
  try {
    S.instruments = await get("/api/instruments");
  } catch (err) {
    if (err instanceof Unauthorized) {
      forgetToken();
      askToken(`the API refused the token: ${err.message}`);
      return;
    }
    throw err;
  }
  if (!P) buildPanels();
  const sel = $("symbol");
  sel.innerHTML = S.instruments.map((i) => `<option value="${i.symbol}">${i.symbol}</option>`).join("");
  const want = params();
  const active = S.instruments.find((i) => i.trades_in_stream > 0) ?? S.instruments[0];
  S.symbol = S.instruments.some((i) => i.symbol === want.symbol) ? want.symbol : active?.symbol;
  S.tf = want.tf;
  if (!live) {
    live = new Live(onMessage, onLiveState);
    live.connect();
  }
  await load();
  setInterval(watchStale, 1000);
}

// the status panel holds the six steps and, under them, the trade state
function statusPart(id) {
  const div = document.createElement("div");
  div.id = id;
  $("status").appendChild(div);
  return div;
}

function buildPanels() {
  statusPart("status-steps");
  P = {
    chart: new PriceChart($("chart")),
    footprint: new Footprint($("footprint")),
    profile: new Profile($("profile")),
    heatmap: new Heatmap($("heatmap")),
    ladder: new Ladder($("ladder")),
    delta: new DeltaChart($("delta")),
    tape: new Tape($("tape")),
    signals: new Signals($("signals")),
    trade: new TradeState(statusPart("trade-state")),
  };
  metrics.chartMarkers = () => P.chart.markers.markers(); // what the series holds, for the browser test
  $("symbol").addEventListener("change", (ev) => pick(ev.target.value, S.tf));
  document.querySelectorAll("[data-tf]").forEach((b) => b.addEventListener("click", () => pick(S.symbol, b.dataset.tf)));
  document.querySelectorAll("[data-mode]").forEach((b) =>
    b.addEventListener("click", () => {
      P.footprint.setMode(b.dataset.mode);
      document.querySelectorAll("[data-mode]").forEach((x) => x.classList.toggle("on", x === b));
    }),
  );
  document.querySelector('[data-mode="bidask"]').classList.add("on");
}

function pick(symbol, tf) {
  if (symbol === S.symbol && tf === S.tf) return;
  S.symbol = symbol;
  S.tf = tf;
  load();
}

// everything of one (instrument, timeframe): REST history, then the live channels
async function load() {
  const gen = ++S.gen;
  const sym = S.symbol;
  writeURL();
  $("symbol").value = sym;
  document.querySelectorAll("[data-tf]").forEach((b) => b.classList.toggle("on", b.dataset.tf === S.tf));
  S.timers.forEach(clearInterval);
  S.timers = [];
  S.inst = S.instruments.find((i) => i.symbol === sym);
  S.decimals = decimalsOf(S.inst?.tick_size ?? 0.01);
  S.lastTick = 0;
  S.stale = false;
  S.profile = {};
  S.bias = null;
  P.chart.setPrecision(S.inst?.tick_size ?? 0.01);
  P.heatmap.reset(S.inst?.tick_size ?? 0);
  P.tape.reset();
  P.signals.reset();
  P.trade.reset();
  P.footprint.setBars([]);
  live.subscribe(CHANNELS, [sym]);
  const fresh = () => gen === S.gen;
  const tf = S.tf;
  await Promise.all([
    get(`/api/candles/${sym}`, { tf, count: 500 }).then((c) => fresh() && setCandles(c)),
    get(`/api/footprint/${sym}`, { tf, count: 500 }).then((f) => fresh() && setFootprint(f)),
    refreshMarkers(gen),
    get(`/api/volume-profile/${sym}`, { scope: "session", days: 1 }).then((l) => fresh() && setProfile("session", l[0])),
    get(`/api/volume-profile/${sym}`, { scope: "composite", days: 1 }).then((l) => fresh() && setProfile("composite", l[0])),
    get(`/api/bias/${sym}`).then((b) => fresh() && setBias(b)),
    get(`/api/strategy-status/${sym}`).then((s) => fresh() && renderStatus($("status-steps"), s, S.decimals)),
    get(`/api/signals/${sym}`, { limit: 20 }).then((l) => fresh() && addEvents(l.map((e) => ({ ...e, type: "trade_event" })))),
  ]).catch(report);
  if (!fresh()) return;
  poll(gen, 500, pollBook);
  poll(gen, 1000, pollTape);
  poll(gen, 2000, () => get(`/api/microstructure/${sym}`).then((m) => fresh() && renderMicro($("micro"), m, S.decimals)));
  poll(gen, 5000, () => get("/api/scanner").then((rows) => renderScanner($("scanner"), rows, S.symbol, (s) => pick(s, S.tf))));
  poll(gen, 30000, refreshPerformance);
  setPanelState("signals", "ok");
  setPanelState("status", "ok");
  setPanelState("scanner", "ok");
  setPanelState("micro", "ok");
  setPanelState("perf", "ok");
}

// a panel's state, except that a stale feed stays shown on the live panels until trades resume
function mark(id, state, reason) {
  if (state === "ok" && S.stale && LIVE_PANELS.includes(id)) return;
  setPanelState(id, state, reason);
}

function poll(gen, every, fn) {
  const run = () => gen === S.gen && fn().catch(report);
  run();
  S.timers.push(setInterval(run, every));
}

function report(err) {
  if (err instanceof Unauthorized) {
    forgetToken();
    askToken(`the API refused the token: ${err.message}`);
    return;
  }
  metrics.errors.push(String(err));
  console.warn(err);
}

function setCandles(list) {
  P.chart.setCandles(list);
  mark("chart", list.length ? "ok" : "empty", "no bars yet for this instrument");
  if (list.length && metrics.firstChartMs === null) requestAnimationFrame(() => (metrics.firstChartMs = performance.now()));
  $("chart").dataset.bars = String(list.length);
  $("chart").dataset.symbol = S.symbol;
}

function setFootprint(bars) {
  P.footprint.setBars(bars);
  P.delta.setBars(bars);
  mark("footprint", bars.length ? "ok" : "empty", "no footprint bars yet");
  setPanelState("delta", bars.length ? "ok" : "empty", "no bars yet");
  exposeBar();
}

// the newest closed bar's delta, for a glance and for the browser test
function exposeBar() {
  const closed = P.footprint.bars.filter((b) => b.final);
  const b = closed[closed.length - 1];
  const el = $("footprint");
  el.dataset.bars = String(P.footprint.bars.length);
  if (!b) return;
  el.dataset.lastClosedTime = String(b.time);
  el.dataset.lastClosedDelta = String(b.delta);
}

let fpTimer = null;
function refreshFootprint() {
  if (fpTimer) return;
  const gen = S.gen;
  fpTimer = setTimeout(() => {
    fpTimer = null;
    get(`/api/footprint/${S.symbol}`, { tf: S.tf, count: 3 })
      .then((list) => {
        if (gen !== S.gen) return;
        list.forEach((b) => P.footprint.upsert(b));
        P.delta.setBars(P.footprint.bars);
        mark("footprint", "ok");
        setPanelState("delta", "ok");
        exposeBar();
      })
      .catch(report);
  }, 1000);
}

// the aggregator's events: signal cards and the trade state
function addEvents(list) {
  P.signals.add(list, S.decimals);
  P.trade.add(list, S.decimals);
}

// the journal's closed trades: every 30 s and as soon as a trade exits
function refreshPerformance() {
  return get("/api/performance").then((p) => renderPerformance($("perf"), p));
}

let mkTimer = null;
function refreshMarkers(gen = S.gen) {
  return get(`/api/markers/${S.symbol}`, { tf: S.tf, limit: 500 }).then((m) => {
    if (gen !== S.gen) return;
    P.chart.setMarkers(m);
    $("chart").dataset.markers = String(m.length);
    $("chart").dataset.tradeMarkers = String(m.filter((x) => !["circle"].includes(x.shape)).length);
  });
}
function markersSoon() {
  clearTimeout(mkTimer);
  mkTimer = setTimeout(() => refreshMarkers().catch(report), 500);
}

function setProfile(scope, p) {
  if (!p) return;
  const key = scope.startsWith("composite") ? "composite" : "session";
  S.profile[key] = p;
  P.profile.set(key, p);
  setPanelState("profile", "ok");
  priceLines();
}

function setBias(b) {
  S.bias = b;
  priceLines();
}

function priceLines() {
  const lines = [];
  const p = S.profile.session;
  if (p) {
    lines.push({ price: p.poc, color: "#ffd600", title: "POC" });
    lines.push({ price: p.vah, color: "#90caf9", title: "VAH" });
    lines.push({ price: p.val, color: "#90caf9", title: "VAL" });
  }
  for (const l of S.bias?.qualified_levels ?? []) lines.push({ price: l.price, color: "#ab47bc", title: l.kind, dashed: true });
  P.chart.setLevels(lines);
  $("chart").dataset.lines = String(lines.length);
}

async function pollBook() {
  const gen = S.gen;
  const b = await get(`/api/orderbook/${S.symbol}`, { levels: 25 });
  if (gen !== S.gen) return;
  S.book = b;
  P.ladder.setBook(b, S.inst?.tick_size ?? 0);
  P.heatmap.addBook(b);
  const state = b.valid ? "ok" : "invalid";
  setPanelState("ladder", state, "book invalid (waiting for a snapshot)");
  mark("heatmap", P.heatmap.samples.length ? (b.valid ? "ok" : "invalid") : "empty", b.valid ? "no book yet" : "book invalid");
  if (b.valid) {
    $("ladder").dataset.bestBid = String(b.best_bid);
    $("ladder").dataset.bestAsk = String(b.best_ask);
  }
}

async function pollTape() {
  const gen = S.gen;
  const list = await get(`/api/tape/${S.symbol}`, { count: 200 });
  if (gen !== S.gen) return;
  const big = new Set();
  for (const b of P.footprint.bars.slice(-3)) for (const t of b.big_trades ?? []) big.add(`${t.ts_event}|${t.price}`);
  P.tape.add(list, S.decimals, big);
  P.heatmap.addTrades(list);
  mark("tape", list.length ? "ok" : "empty", "no trades yet");
}

function showTick(t) {
  if (!t) return;
  const el = $("last");
  el.textContent = t.price.toFixed(S.decimals);
  el.className = `last ${t.side === "buy" ? "up" : "down"}`;
  el.dataset.price = String(t.price);
  el.dataset.tradeId = t.trade_id;
  S.lastTick = Date.now();
}

function onMessage(msg) {
  metrics.messages += 1;
  if (msg.symbol && msg.symbol !== S.symbol) return;
  const d = msg.data;
  switch (msg.channel) {
    case "tick":
      showTick(d);
      break;
    case "candle":
      if (msg.snapshot) {
        if (d?.[S.tf]) P.chart.update(d[S.tf]);
      } else if (d.timeframe === S.tf) {
        P.chart.update(d);
        $("chart").dataset.updates = String(Number($("chart").dataset.updates ?? 0) + 1);
        refreshFootprint();
      }
      break;
    case "delta":
      if (d) $("bar-delta").textContent = `Δ ${d.bar_delta?.toFixed(3)} · CVD ${d.cvd?.toFixed(3)}`;
      break;
    case "volume_profile":
      if (msg.snapshot) for (const [scope, p] of Object.entries(d ?? {})) setProfile(scope, p);
      else setProfile(d.scope, d);
      break;
    case "bias":
      if (d) get(`/api/bias/${S.symbol}`).then(setBias).catch(report);
      break;
    case "signal":
      P.signals.add(msg.snapshot ? d : [d], S.decimals);
      if (!msg.snapshot) markersSoon();
      break;
    case "trade_state":
      if (msg.snapshot) {
        addEvents((d?.events ?? []).map((e) => ({ ...e, type: "trade_event" })));
      } else if (d.type === "strategy_status") {
        get(`/api/strategy-status/${S.symbol}`).then((s) => renderStatus($("status-steps"), s, S.decimals)).catch(report);
      } else {
        addEvents([d]);
        markersSoon();
        if (d.kind === "exit") refreshPerformance();
      }
      setPanelState("signals", "ok");
      break;
    case "orderbook":
      break; // the book levels come from /api/orderbook (pollBook); the stats are in it too
    case "stats":
      if (d && !d.book_valid) setPanelState("ladder", "invalid", "book invalid");
      break;
    case "error":
      metrics.errors.push(JSON.stringify(d));
      break;
    default:
      break;
  }
}

function onLiveState(state, reason) {
  const el = $("feed");
  el.dataset.state = state;
  el.textContent = state === "connected" ? "live" : `${state}${reason ? `: ${reason}` : ""}`;
  if (state === "unauthorized") {
    forgetToken();
    askToken(reason);
  }
}

function watchStale() {
  if (!S.lastTick || $("feed").dataset.state !== "connected") return;
  const age = Date.now() - S.lastTick;
  const stale = age > STALE_MS;
  $("feed").textContent = stale ? `stale: no trade for ${Math.round(age / 1000)} s` : "live";
  $("feed").classList.toggle("warn", stale);
  S.stale = stale;
  for (const id of LIVE_PANELS) {
    const el = $(`p-${id}`);
    if (stale) setPanelState(id, "stale", `feed stale (${Math.round(age / 1000)} s)`);
    else if (el.dataset.state === "stale") setPanelState(id, "ok");
  }
}

window.addEventListener("popstate", () => {
  const p = params();
  if (p.symbol) pick(p.symbol, p.tf);
});
main().catch((err) => console.error(err));
