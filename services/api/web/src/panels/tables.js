// The multi-instrument scanner, microstructure and performance (win rate, expectancy,
// R distribution, equity curve) panels.

import { dirClass, dirText, esc, hms, num } from "../html.js";

export function renderScanner(host, rows, current, onPick) {
  host.innerHTML = `<table class="scanner"><thead><tr><th>instrument</th><th>status</th><th>prio</th><th>steps</th><th>bias</th><th>price</th></tr></thead><tbody>${rows
    .map((r) => `<tr data-symbol="${esc(r.symbol)}" class="${r.symbol === current ? "current" : ""}"><td>${esc(r.symbol)}</td><td>${esc(r.overall)}</td><td>${r.priority}</td><td>${r.steps_done}/${r.steps_total}</td><td class="${dirClass(r.bias_direction)}">${dirText(r.bias_direction)} ${num(r.bias_confidence, 2)}</td><td>${r.current_price ?? "–"}</td></tr>`)
    .join("")}</tbody></table>`;
  host.querySelectorAll("tr[data-symbol]").forEach((tr) => tr.addEventListener("click", () => onPick(tr.dataset.symbol)));
}

export function renderMicro(host, m, decimals) {
  const b = m.book;
  const d = m.delta ?? {};
  host.innerHTML = `<dl class="micro">
    <dt>market</dt><dd>${esc(m.market_state)}</dd>
    <dt>book</dt><dd>${b ? (b.valid ? `bid ${num(b.best_bid, decimals)} / ask ${num(b.best_ask, decimals)}` : `<span class="warn">invalid</span>`) : "–"}</dd>
    <dt>imbalance</dt><dd>${b ? num(b.imbalance, 3) : "–"}</dd>
    <dt>depth</dt><dd>${b ? `${num(b.bid_depth, 2)} / ${num(b.ask_depth, 2)}` : "–"}</dd>
    <dt>least resistance</dt><dd class="${dirClass(b?.least_resistance)}">${b ? dirText(b.least_resistance) : "–"}</dd>
    <dt>bar delta</dt><dd>${num(d.bar_delta, 3)}</dd>
    <dt>session CVD</dt><dd>${num(d.session_cvd, 3)}</dd>
    <dt>continuous CVD</dt><dd>${num(d.cvd_total, 3)}</dd>
  </dl><div class="patterns">${(m.patterns ?? [])
    .slice(0, 6)
    .map((p) => `<div class="${dirClass(p.direction)}">${hms(p.ts_event)} ${esc(p.type)} ${dirText(p.direction)} @ ${num(p.price, decimals)} (${num(p.strength, 2)})</div>`)
    .join("")}</div>`;
}

export function renderPerformance(host, p) {
  if (!p || !p.trades) {
    host.innerHTML = `<div class="empty">no closed trades in the journal yet</div>`;
    return;
  }
  const pct = p.win_rate === null ? "–" : `${(p.win_rate * 100).toFixed(1)} %`;
  host.innerHTML = `<div class="perf-stats">
    <div><em>trades</em><b data-perf="trades">${p.trades}</b></div>
    <div><em>win rate</em><b data-perf="win_rate">${pct}</b></div>
    <div><em>expectancy</em><b>${num(p.expectancy_r, 2)} R</b></div>
    <div><em>total</em><b>${num(p.total_r, 2)} R</b></div>
    <div><em>profit factor</em><b>${num(p.profit_factor, 2)}</b></div></div>
    <table class="perf-trades"><thead><tr><th>closed</th><th>instrument</th><th>R</th></tr></thead><tbody>${p.equity_curve
      .slice(-3)
      .reverse()
      .map((e) => `<tr data-trade-id="${esc(e.trade_id)}" data-r="${e.r}"><td>${hms(e.exit_ts)}</td><td>${esc(e.symbol)}</td><td class="${e.r >= 0 ? "up" : "down"}">${num(e.r, 2)}</td></tr>`)
      .join("")}</tbody></table>
    <canvas class="equity"></canvas><canvas class="rdist"></canvas>`;
  const [eq, rd] = host.querySelectorAll("canvas");
  drawSeries(eq, p.equity_curve.map((e) => e.equity_r), "equity (R)");
  drawBars(rd, p.r_distribution);
}

function sized(canvas) {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, r.width * dpr);
  canvas.height = Math.max(1, r.height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [ctx, r.width, r.height];
}

function drawSeries(canvas, values, title) {
  const [ctx, w, h] = sized(canvas);
  ctx.fillStyle = "#787b86";
  ctx.font = "10px sans-serif";
  ctx.fillText(title, 4, 11);
  if (values.length < 1) return;
  const all = [0, ...values];
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  const y = (v) => h - 4 - ((v - lo) / (hi - lo || 1)) * (h - 18);
  ctx.strokeStyle = "#787b86";
  ctx.beginPath();
  ctx.moveTo(0, y(0));
  ctx.lineTo(w, y(0));
  ctx.stroke();
  ctx.strokeStyle = values[values.length - 1] >= 0 ? "#26a69a" : "#ef5350";
  ctx.lineWidth = 2;
  ctx.beginPath();
  all.forEach((v, i) => (i ? ctx.lineTo((i / (all.length - 1)) * w, y(v)) : ctx.moveTo(0, y(v))));
  ctx.stroke();
}

function drawBars(canvas, buckets) {
  const [ctx, w, h] = sized(canvas);
  ctx.fillStyle = "#787b86";
  ctx.font = "10px sans-serif";
  ctx.fillText("R distribution", 4, 11);
  if (!buckets.length) return;
  const max = Math.max(...buckets.map((b) => b.count));
  const bw = w / buckets.length;
  buckets.forEach((b, i) => {
    const bh = (b.count / max) * (h - 30);
    ctx.fillStyle = b.from_r >= 0 ? "#26a69a" : "#ef5350";
    ctx.fillRect(i * bw + 1, h - 14 - bh, bw - 2, bh);
    ctx.fillStyle = "#b2b5be";
    ctx.fillText(String(b.from_r), i * bw + 2, h - 3);
  });
}
