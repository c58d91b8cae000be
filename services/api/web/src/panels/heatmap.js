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
const RGB = Array.from({ length: 256 }, (_, i) => heat(i / 255));
const BACKGROUND = `rgb(${RGB[0].join(",")})`;
// RGBA packed for a Uint32Array over ImageData (little-endian: A B G R)
const PACKED = RGB.map(([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0);

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
    // the prices the window traded at, plus the latest book's depth on each side
    let low = mid;
    let high = mid;
    for (const c of s) {
      low = Math.min(low, c.bid);
      high = Math.max(high, c.ask);
    }
    const pad = Math.max(span, tick * 10);
    const hi = Math.ceil((high + pad) / tick) * tick; // on the tick grid: rows are price levels
    const lo = Math.floor((low - pad) / tick) * tick;
    const y = (p) => ((hi - p) / (hi - lo)) * h;
    const rowH = (tick / (hi - lo)) * h;
    const colW = plotW / Math.max(120, s.length); // widen the columns until the window is full
    const x0 = plotW - s.length * colW;
    let max = 0;
    for (const c of s) {
      for (const l of c.bids) if (l[1] > max) max = l[1];
      for (const l of c.asks) if (l[1] > max) max = l[1];
    }
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, plotW, h);
    // one pixel per (sample, price row) in a small image, scaled in one drawImage; with more
    // levels than pixel rows, each image row holds the largest size of its levels
    const levels = Math.round((hi - lo) / tick) + 1;
    const rows = Math.min(levels, Math.max(1, Math.ceil(h)));
    const per = levels / rows;
    if (!this.buf) this.buf = document.createElement("canvas");
    this.buf.width = s.length;
    this.buf.height = rows;
    const bctx = this.buf.getContext("2d");
    const img = bctx.createImageData(s.length, rows);
    const px = new Uint32Array(img.data.buffer);
    px.fill(PACKED[0]);
    const best = new Float32Array(s.length * rows);
    for (let i = 0; i < s.length; i++) {
      for (const side of [s[i].bids, s[i].asks]) {
        for (const l of side) {
          const r = Math.floor(Math.round((hi - l[0]) / tick) / per);
          if (r < 0 || r >= rows) continue;
          const o = r * s.length + i;
          if (l[1] > best[o]) best[o] = l[1];
        }
      }
    }
    for (let o = 0; o < best.length; o++) {
      if (best[o] > 0) px[o] = PACKED[Math.min(255, Math.round((best[o] / max) * 255))];
    }
    bctx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.buf, 0, 0, s.length, rows, x0, y(hi) - rowH / 2, s.length * colW, levels * rowH);
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
    // trades as bubbles: the volume of each side traded at a price within one sample's column
    // (as Bookmap merges prints), drawn as one path per side
    const t0 = s[0].ts;
    const t1 = last.ts;
    const cells = new Map();
    for (const t of this.trades) {
      if (t.ts < t0 || t.ts > t1 + 1e9 || t.price < lo || t.price > hi) continue;
      const i = locate(s, t.ts);
      const key = `${i}|${t.price}|${t.side}`;
      const cell = cells.get(key);
      if (cell) cell.size += t.size;
      else cells.set(key, { i, price: t.price, side: t.side, size: t.size });
    }
    let maxSize = 0;
    for (const c of cells.values()) maxSize = Math.max(maxSize, c.size);
    for (const side of ["buy", "sell"]) {
      const path = new Path2D();
      for (const c of cells.values()) {
        if (c.side !== side) continue;
        const x = Math.min(x0 + c.i * colW + colW / 2, plotW - 2);
        const r = 1.5 + 10 * Math.sqrt(c.size / maxSize);
        path.moveTo(x + r, y(c.price));
        path.arc(x, y(c.price), r, 0, Math.PI * 2);
      }
      ctx.fillStyle = side === "buy" ? "rgba(105,240,174,0.65)" : "rgba(255,138,128,0.65)";
      ctx.fill(path); // no outline: stroking thousands of arcs costs more than the rest
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
