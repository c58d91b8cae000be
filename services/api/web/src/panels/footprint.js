// The footprint: per bar and price row the volume at bid × ask (or delta, or volume), with
// imbalances, stacked imbalances, unfinished auctions, the bar POC, delta and CVD under each bar.

import { CanvasPanel, decimalsOf, fmtSize, text } from "../canvas.js";

const UP = "#26a69a";
const DOWN = "#ef5350";
const AXIS_W = 64;
const HEAD_H = 16;
const FOOT_H = 36;
const COL = { bidask: 92, delta: 54, volume: 54 };

export class Footprint extends CanvasPanel {
  constructor(host) {
    super(host);
    this.bars = [];
    this.mode = "bidask";
    this.scroll = 0; // bars hidden on the right
    this.shift = 0; // rows the view is moved up from the newest close (shift + wheel)
    this.row = 0;
    this.decimals = 2;
    this.canvas.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      if (ev.shiftKey) this.shift += 3 * Math.sign(ev.deltaY);
      else this.scroll = Math.max(0, Math.min(this.bars.length - 1, this.scroll + Math.sign(ev.deltaY)));
      this.invalidate();
    });
  }

  setBars(bars) {
    this.bars = bars;
    this.row = rowOf(bars);
    this.decimals = Math.max(decimalsOf(this.row), 0);
    this.invalidate();
  }

  upsert(bar) {
    const last = this.bars[this.bars.length - 1];
    if (last && last.time === bar.time) this.bars[this.bars.length - 1] = bar;
    else if (!last || bar.time > last.time) {
      this.bars.push(bar);
      if (this.bars.length > 2000) this.bars.shift();
    } else {
      const i = this.bars.findIndex((b) => b.time === bar.time);
      if (i >= 0) this.bars[i] = bar;
    }
    if (!this.row) this.setBars(this.bars);
    this.invalidate();
  }

  setMode(mode) {
    this.mode = mode;
    this.invalidate();
  }

  visible(w) {
    const colW = COL[this.mode];
    const n = Math.max(1, Math.floor((w - AXIS_W) / colW));
    const end = this.bars.length - this.scroll;
    return { colW, list: this.bars.slice(Math.max(0, end - n), end) };
  }

  draw(ctx, w, h) {
    const { colW, list } = this.visible(w);
    if (!list.length || !this.row) return;
    let lo = Infinity;
    let hi = -Infinity;
    let maxCell = 0;
    for (const b of list) {
      for (const l of b.levels) {
        lo = Math.min(lo, l.price);
        hi = Math.max(hi, l.price);
        maxCell = Math.max(maxCell, this.mode === "volume" ? l.bid + l.ask : Math.max(l.bid, l.ask, Math.abs(l.ask - l.bid)));
      }
    }
    if (!Number.isFinite(lo)) return;
    const rows = Math.round((hi - lo) / this.row) + 1;
    const plotH = h - HEAD_H - FOOT_H;
    // fit the visible bars, but never below a readable row: then centre on the newest close
    const rowH = Math.max(13, Math.min(18, plotH / rows));
    const last = list[list.length - 1];
    const centre = rowH * rows <= plotH ? (hi + lo) / 2 : last.close + this.shift * this.row;
    const top = HEAD_H + plotH / 2 - ((hi - centre) / this.row + 0.5) * rowH;
    const y = (p) => top + Math.round((hi - p) / this.row) * rowH;
    const fontPx = Math.min(11, Math.floor(rowH - 1));
    const font = `${fontPx}px ui-monospace, monospace`;
    const x0 = w - AXIS_W - list.length * colW;
    ctx.textBaseline = "middle";
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, HEAD_H, w, plotH);
    ctx.clip();
    list.forEach((b, i) => this.drawCells(ctx, b, x0 + i * colW, colW, y, rowH, maxCell, font, fontPx >= 7, h));
    ctx.restore();
    list.forEach((b, i) => this.drawLabels(ctx, b, x0 + i * colW, colW, h));
    // price axis
    ctx.fillStyle = "#131722";
    ctx.fillRect(w - AXIS_W, 0, AXIS_W, h);
    const every = Math.max(1, Math.ceil(14 / rowH));
    for (let r = 0; r < rows; r += every) {
      const p = hi - r * this.row;
      const yy = y(p) + rowH / 2;
      if (yy > HEAD_H && yy < h - FOOT_H) text(ctx, p.toFixed(this.decimals), w - AXIS_W + 4, yy, "#b2b5be", "10px sans-serif");
    }
  }

  drawCells(ctx, b, x, colW, y, rowH, maxCell, font, withText, h) {
    const imb = new Map(b.imbalances.map((m) => [m.price, m.side]));
    const inner = colW - 10; // 8 px candle lane at the left
    const cx = x + 9;
    if (b.gapped) {
      ctx.fillStyle = "rgba(255,152,0,0.10)";
      ctx.fillRect(x, HEAD_H, colW, h - HEAD_H - FOOT_H);
    }
    for (const l of b.levels) {
      const ry = y(l.price);
      const d = l.ask - l.bid;
      let shade;
      if (this.mode === "volume") shade = `rgba(41,98,255,${(0.15 + 0.75 * (l.bid + l.ask) / maxCell).toFixed(3)})`;
      else {
        const a = (0.12 + 0.7 * Math.abs(d) / maxCell).toFixed(3);
        shade = d >= 0 ? `rgba(38,166,154,${a})` : `rgba(239,83,80,${a})`;
      }
      ctx.fillStyle = shade;
      ctx.fillRect(cx, ry + 0.5, inner, rowH - 1);
      const side = imb.get(l.price);
      if (side) {
        ctx.strokeStyle = side > 0 ? UP : DOWN;
        ctx.lineWidth = 1;
        ctx.strokeRect(cx + (side > 0 ? inner / 2 : 0) + 0.5, ry + 1, inner / 2 - 1, rowH - 2);
      }
      if (!withText) continue;
      const mid = ry + rowH / 2;
      if (this.mode === "bidask") {
        const bidCol = side < 0 ? "#ff8a80" : "#d1d4dc";
        const askCol = side > 0 ? "#69f0ae" : "#d1d4dc";
        text(ctx, fmtSize(l.bid), cx + inner / 2 - 6, mid, bidCol, side < 0 ? `bold ${font}` : font, "right");
        text(ctx, "×", cx + inner / 2, mid, "#787b86", font, "center");
        text(ctx, fmtSize(l.ask), cx + inner / 2 + 6, mid, askCol, side > 0 ? `bold ${font}` : font, "left");
      } else {
        const v = this.mode === "delta" ? d : l.bid + l.ask;
        text(ctx, fmtSize(v), cx + inner / 2, mid, "#d1d4dc", font, "center");
      }
    }
    // bar POC
    if (b.poc !== null && b.poc !== undefined) {
      ctx.strokeStyle = "#ffd600";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(cx + 0.5, y(b.poc) + 0.5, inner - 1, rowH - 1);
    }
    // stacked imbalances: a bar along the side of the run
    for (const s of b.stacked) {
      ctx.fillStyle = s.side > 0 ? UP : DOWN;
      const yTop = y(s.high);
      const yBot = y(s.low) + rowH;
      ctx.fillRect(s.side > 0 ? x + colW - 3 : cx - 1, yTop, 2, yBot - yTop);
    }
    // candle lane: wick and body
    const up = b.close >= b.open;
    ctx.fillStyle = up ? UP : DOWN;
    const yh = y(b.high);
    const yl = y(b.low) + rowH;
    ctx.fillRect(x + 3, yh, 1, yl - yh);
    const yo = y(b.open) + rowH / 2;
    const yc = y(b.close) + rowH / 2;
    ctx.fillRect(x + 1, Math.min(yo, yc), 5, Math.max(1, Math.abs(yc - yo)));
    // unfinished auctions: a dashed edge at the extreme with volume on both sides
    ctx.setLineDash([3, 2]);
    ctx.strokeStyle = "#ff9800";
    ctx.lineWidth = 1.5;
    if (b.unfinished_high) line(ctx, cx, yh, cx + inner, yh);
    if (b.unfinished_low) line(ctx, cx, yl, cx + inner, yl);
    ctx.setLineDash([]);
  }

  // header: time, gap mark; footer: delta and CVD; the open bar outlined
  drawLabels(ctx, b, x, colW, h) {
    const t = new Date(b.time * 1000);
    const hhmm = `${String(t.getUTCHours()).padStart(2, "0")}:${String(t.getUTCMinutes()).padStart(2, "0")}`;
    text(ctx, b.gapped ? `${hhmm} GAP` : hhmm, x + colW / 2, 8, b.gapped ? "#ff9800" : "#787b86", "10px sans-serif", "center");
    const fy = h - FOOT_H;
    ctx.fillStyle = "#1e222d";
    ctx.fillRect(x + 1, fy + 2, colW - 2, FOOT_H - 4);
    text(ctx, fmtSize(b.delta), x + colW / 2, fy + 11, b.delta >= 0 ? UP : DOWN, "bold 10px ui-monospace, monospace", "center");
    text(ctx, fmtSize(b.cvd), x + colW / 2, fy + 26, b.cvd >= 0 ? "#80cbc4" : "#ef9a9a", "10px ui-monospace, monospace", "center");
    if (!b.final) {
      ctx.strokeStyle = "#2962ff";
      ctx.lineWidth = 1;
      ctx.strokeRect(x + 0.5, HEAD_H - 0.5, colW - 1, h - HEAD_H - FOOT_H + 1);
    }
  }
}

function line(ctx, x1, y1, x2, y2) {
  ctx.beginPath();
  ctx.moveTo(x1, y1);
  ctx.lineTo(x2, y2);
  ctx.stroke();
}

function rowOf(bars) {
  let best = Infinity;
  for (const b of bars.slice(-50)) {
    for (let i = 1; i < b.levels.length; i++) {
      const d = b.levels[i].price - b.levels[i - 1].price;
      if (d > 1e-12) best = Math.min(best, d);
    }
  }
  if (!Number.isFinite(best)) return 0;
  return Number(best.toPrecision(6));
}
