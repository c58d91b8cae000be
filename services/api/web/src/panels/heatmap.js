// The book heatmap: resting size by price over time (one column per book sample, brighter =
// more size), best bid/ask lines, and trades as bubbles sized by volume, as Bookmap shows it.

import { CanvasPanel, decimalsOf, text } from "../canvas.js";

const AXIS_W = 64;
const COLS = 360;

// dark blue -> cyan -> yellow -> white
function heat(v) {
  const t = Math.max(0, Math.min(1, v));
  const stops = [
    [0, [13, 17, 38]],
    [0.25, [20, 70, 160]],
    [0.5, [0, 190, 210]],
    [0.75, [250, 220, 40]],
    [1, [255, 255, 255]],
  ];
  for (let i = 1; i < stops.length; i++) {
    if (t <= stops[i][0]) {
      const [a, ca] = stops[i - 1];
      const [b, cb] = stops[i];
      const f = (t - a) / (b - a);
      return ca.map((c, k) => Math.round(c + (cb[k] - c) * f));
    }
  }
  return [255, 255, 255];
}
const PALETTE = Array.from({ length: 256 }, (_, i) => {
  const [r, g, b] = heat(i / 255);
  return `rgb(${r},${g},${b})`;
});

export class Heatmap extends CanvasPanel {
  constructor(host) {
    super(host);
    this.samples = []; // {ts, bids: [[p, q]], asks, bid, ask}
    this.trades = []; // {ts, price, size, side}
    this.tick = 0;
    this.seenTrades = new Set();
  }

  reset(tick) {
    this.samples = [];
    this.trades = [];
    this.seenTrades.clear();
    this.tick = tick;
    this.invalidate();
  }

  addBook(book) {
    if (!book.valid) return;
    const last = this.samples[this.samples.length - 1];
    if (last && last.ts === book.ts_event) return;
    this.samples.push({
      ts: book.ts_event,
      bids: book.bids.map((l) => [l.price, l.quantity]),
      asks: book.asks.map((l) => [l.price, l.quantity]),
      bid: book.best_bid,
      ask: book.best_ask,
    });
    if (this.samples.length > COLS) this.samples.shift();
    this.invalidate();
  }

  addTrades(list) {
    for (const t of list) {
      if (this.seenTrades.has(t.trade_id)) continue;
      this.seenTrades.add(t.trade_id);
      this.trades.push({ ts: t.ts_event, price: t.price, size: t.size, side: t.side });
    }
    this.trades.sort((a, b) => a.ts - b.ts);
    const from = this.samples.length ? this.samples[0].ts : 0;
    if (this.trades.length > 5000 || (this.trades.length && this.trades[0].ts < from)) {
      this.trades = this.trades.filter((t) => t.ts >= from).slice(-5000);
      this.seenTrades = new Set([...this.seenTrades].slice(-10000));
    }
    this.invalidate();
  }

  draw(ctx, w, h) {
    const s = this.samples;
    if (!s.length) return;
    const plotW = w - AXIS_W;
    const last = s[s.length - 1];
    const mid = (last.bid + last.ask) / 2;
    let span = 0;
    for (const l of last.bids.concat(last.asks)) span = Math.max(span, Math.abs(l[0] - mid));
    const tick = this.tick || 1;
    const half = Math.max(span, tick * 10);
    const hi = mid + half;
    const lo = mid - half;
    const y = (p) => ((hi - p) / (hi - lo)) * h;
    const rowH = Math.max(1, (tick / (hi - lo)) * h);
    const colW = plotW / Math.max(120, s.length); // widen the columns until the window is full
    const x0 = plotW - s.length * colW;
    let max = 0;
    for (const c of s) for (const l of c.bids.concat(c.asks)) max = Math.max(max, l[1]);
    ctx.fillStyle = PALETTE[0];
    ctx.fillRect(0, 0, plotW, h);
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      const x = x0 + i * colW;
      for (const l of c.bids.concat(c.asks)) {
        if (l[0] < lo || l[0] > hi) continue;
        ctx.fillStyle = PALETTE[Math.min(255, Math.round((l[1] / max) * 255))];
        ctx.fillRect(x, y(l[0]) - rowH / 2, colW + 0.5, rowH + 0.5);
      }
    }
    // best bid / ask
    for (const [key, color] of [["bid", "#26a69a"], ["ask", "#ef5350"]]) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      s.forEach((c, i) => {
        const x = x0 + i * colW;
        if (i === 0) ctx.moveTo(x, y(c[key]));
        else ctx.lineTo(x, y(c[key]));
      });
      ctx.stroke();
    }
    // trades as bubbles, at their time between samples
    const t0 = s[0].ts;
    const t1 = last.ts;
    const maxSize = this.trades.reduce((m, t) => Math.max(m, t.size), 0) || 1;
    for (const t of this.trades) {
      if (t.ts < t0 || t.ts > t1 + 1e9 || t.price < lo || t.price > hi) continue;
      const i = locate(s, t.ts);
      const x = x0 + i * colW + colW / 2;
      const r = 2 + 12 * Math.sqrt(t.size / maxSize);
      ctx.beginPath();
      ctx.arc(Math.min(x, plotW - 2), y(t.price), r, 0, Math.PI * 2);
      ctx.fillStyle = t.side === "buy" ? "rgba(38,166,154,0.55)" : "rgba(239,83,80,0.55)";
      ctx.fill();
      ctx.strokeStyle = t.side === "buy" ? "#69f0ae" : "#ff8a80";
      ctx.lineWidth = 1;
      ctx.stroke();
    }
    ctx.fillStyle = "#131722";
    ctx.fillRect(plotW, 0, AXIS_W, h);
    const dec = decimalsOf(tick);
    const stepPx = 16;
    const steps = Math.floor(h / stepPx);
    ctx.textBaseline = "middle";
    for (let k = 0; k <= steps; k++) {
      const p = hi - ((hi - lo) * k) / steps;
      text(ctx, p.toFixed(dec), plotW + 4, y(p), "#b2b5be", "10px sans-serif");
    }
  }
}

function locate(samples, ts) {
  let a = 0;
  let b = samples.length - 1;
  while (a < b) {
    const m = (a + b + 1) >> 1;
    if (samples[m].ts <= ts) a = m;
    else b = m - 1;
  }
  return a;
}
