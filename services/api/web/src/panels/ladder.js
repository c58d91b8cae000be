// The DOM ladder: bid and ask size by price around the touch, walls and thin levels marked,
// the spread shaded between the best bid and ask.

import { CanvasPanel, decimalsOf, fmtSize, text } from "../canvas.js";

export class Ladder extends CanvasPanel {
  constructor(host) {
    super(host);
    this.book = null;
    this.tick = 0;
  }

  setBook(book, tick) {
    this.book = book;
    this.tick = tick;
    this.invalidate();
  }

  draw(ctx, w, h) {
    const b = this.book;
    if (!b || !b.valid || !b.bids.length || !b.asks.length) return;
    const tick = this.tick || 1;
    const dec = decimalsOf(tick);
    const rowH = 16;
    const n = Math.floor(h / rowH);
    const key = (p) => Math.round(p / tick);
    const bids = new Map(b.bids.map((l) => [key(l.price), l.quantity]));
    const asks = new Map(b.asks.map((l) => [key(l.price), l.quantity]));
    const walls = new Set((b.stats?.walls ?? []).map((l) => key(l[0])));
    const thin = new Set((b.stats?.thin_levels ?? []).map((p) => key(p)));
    const bb = key(b.best_bid);
    const ba = key(b.best_ask);
    const center = Math.round((bb + ba) / 2);
    const topKey = center + Math.floor(n / 2);
    const max = Math.max(...b.bids.map((l) => l.quantity), ...b.asks.map((l) => l.quantity));
    const colW = w / 3;
    ctx.textBaseline = "middle";
    for (let r = 0; r < n; r++) {
      const k = topKey - r;
      const yy = r * rowH;
      const mid = yy + rowH / 2;
      if (k > bb && k < ba) {
        ctx.fillStyle = "rgba(120,123,134,0.18)";
        ctx.fillRect(0, yy, w, rowH);
      }
      const bq = bids.get(k);
      const aq = asks.get(k);
      if (bq) {
        ctx.fillStyle = walls.has(k) ? "rgba(38,166,154,0.85)" : "rgba(38,166,154,0.35)";
        const bw = (bq / max) * colW;
        ctx.fillRect(colW - bw, yy + 1, bw, rowH - 2);
        text(ctx, fmtSize(bq), colW - 4, mid, "#e0e3eb", walls.has(k) ? "bold 11px ui-monospace, monospace" : "11px ui-monospace, monospace", "right");
      }
      if (aq) {
        ctx.fillStyle = walls.has(k) ? "rgba(239,83,80,0.85)" : "rgba(239,83,80,0.35)";
        const aw = (aq / max) * colW;
        ctx.fillRect(2 * colW, yy + 1, aw, rowH - 2);
        text(ctx, fmtSize(aq), 2 * colW + 4, mid, "#e0e3eb", walls.has(k) ? "bold 11px ui-monospace, monospace" : "11px ui-monospace, monospace", "left");
      }
      const isTouch = k === bb || k === ba;
      text(ctx, (k * tick).toFixed(dec), 1.5 * colW, mid, isTouch ? "#ffffff" : "#b2b5be", isTouch ? "bold 11px sans-serif" : "11px sans-serif", "center");
      if (thin.has(k)) {
        ctx.fillStyle = "#ff9800";
        ctx.fillRect(colW + 2, yy + 3, 3, rowH - 6);
      }
      if (walls.has(k)) {
        text(ctx, "WALL", 2 * colW - 4, mid, "#ffd600", "9px sans-serif", "right");
      }
    }
    const spreadRows = ba - bb;
    text(ctx, `spread ${(spreadRows * tick).toFixed(dec)} (${spreadRows} tick${spreadRows === 1 ? "" : "s"})`, 4, h - 6, "#b2b5be", "10px sans-serif");
  }
}
