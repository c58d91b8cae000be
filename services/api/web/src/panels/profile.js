// Session and composite volume profiles side by side: volume by price, value area shaded,
// POC, VAH/VAL, HVN/LVN marks and naked POCs (dashed), each on its own price scale.

import { CanvasPanel, fmtSize, text } from "../canvas.js";

export function normalProfile(p) {
  if (!p) return null;
  const rows = (p.rows ?? []).map((r) => (Array.isArray(r) ? { price: r[0], volume: r[1] } : r));
  rows.sort((a, b) => a.price - b.price);
  return { ...p, rows };
}

export class Profile extends CanvasPanel {
  constructor(host) {
    super(host);
    this.session = null;
    this.composite = null;
    this.decimals = 2;
  }

  set(scope, p) {
    if (scope === "session") this.session = normalProfile(p);
    else this.composite = normalProfile(p);
    this.invalidate();
  }

  draw(ctx, w, h) {
    const half = Math.floor(w / 2);
    this.one(ctx, this.session, 0, half - 4, h, "session");
    this.one(ctx, this.composite, half + 4, w - half - 4, h, "composite");
  }

  one(ctx, p, x, w, h, title) {
    text(ctx, title, x + 4, 12, "#787b86", "11px sans-serif");
    if (!p || !p.rows.length) {
      text(ctx, "no profile yet", x + w / 2, h / 2, "#787b86", "12px sans-serif", "center");
      return;
    }
    const rows = p.rows;
    const lo = rows[0].price;
    const hi = rows[rows.length - 1].price;
    const step = rows.length > 1 ? Math.min(...rows.slice(1).map((r, i) => r.price - rows[i].price)) : 1;
    const n = Math.round((hi - lo) / step) + 1;
    const top = 20;
    const rowH = (h - top - 4) / n;
    const y = (price) => top + ((hi - price) / step) * rowH;
    const max = Math.max(...rows.map((r) => r.volume));
    const labelW = 58;
    const barW = w - labelW - 4;
    const hvn = new Set((p.hvn ?? []).map((v) => Math.round(v / step)));
    const lvn = new Set((p.lvn ?? []).map((v) => Math.round(v / step)));
    for (const r of rows) {
      const inVa = r.price >= p.val - 1e-9 && r.price <= p.vah + 1e-9;
      const k = Math.round(r.price / step);
      ctx.fillStyle = k === Math.round(p.poc / step) ? "#ffd600" : inVa ? "rgba(41,98,255,0.75)" : "rgba(120,123,134,0.55)";
      ctx.fillRect(x + labelW, y(r.price), Math.max(1, (r.volume / max) * barW), Math.max(1, rowH - 0.5));
      if (hvn.has(k) || lvn.has(k)) {
        ctx.fillStyle = hvn.has(k) ? "#ab47bc" : "#4dd0e1";
        ctx.fillRect(x + labelW - 5, y(r.price), 4, Math.max(1, rowH - 0.5));
      }
    }
    const dec = Math.max(0, -Math.floor(Math.log10(step)));
    const mark = (price, label, color, dash) => {
      const yy = y(price) + rowH / 2;
      ctx.strokeStyle = color;
      ctx.lineWidth = 1;
      ctx.setLineDash(dash ? [4, 3] : []);
      ctx.beginPath();
      ctx.moveTo(x + labelW, yy);
      ctx.lineTo(x + w, yy);
      ctx.stroke();
      ctx.setLineDash([]);
      text(ctx, `${label} ${price.toFixed(dec)}`, x + 2, yy, color, "10px sans-serif");
    };
    ctx.textBaseline = "middle";
    mark(p.vah, "VAH", "#90caf9", false);
    mark(p.val, "VAL", "#90caf9", false);
    mark(p.poc, "POC", "#ffd600", false);
    for (const np of p.naked_pocs ?? []) if (np >= lo && np <= hi) mark(np, "nPOC", "#ff9800", true);
    text(ctx, `${p.shape || "?"} · ${fmtSize(p.volume)} ${p.volume_kind === "ticks" ? "ticks" : ""}`, x + w - 4, 12, "#b2b5be", "10px sans-serif", "right");
  }
}
