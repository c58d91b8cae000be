// Time & sales: the latest trades, newest first; big trades (size ≥ the threshold) highlighted.

import { esc, hms } from "../html.js";

export class Tape {
  constructor(host) {
    this.host = host;
    this.rows = [];
    this.seen = new Set();
  }

  reset() {
    this.rows = [];
    this.seen.clear();
    this.host.innerHTML = "";
  }

  add(trades, decimals) {
    const fresh = trades.filter((t) => !this.seen.has(t.trade_id));
    if (!fresh.length) return;
    for (const t of fresh) this.seen.add(t.trade_id);
    this.rows = fresh.concat(this.rows).sort((a, b) => b.ts_event - a.ts_event).slice(0, 80);
    this.seen = new Set(this.rows.map((t) => t.trade_id));
    const sizes = this.rows.map((t) => t.size).sort((a, b) => a - b);
    const big = sizes[Math.floor(sizes.length * 0.95)] ?? Infinity;
    this.host.innerHTML = `<table class="tape"><thead><tr><th>time</th><th>price</th><th>size</th><th>side</th></tr></thead><tbody>${this.rows
      .map((t) => `<tr class="${t.side === "buy" ? "up" : "down"}${t.size >= big && this.rows.length >= 20 ? " big" : ""}" data-trade-id="${esc(t.trade_id)}"><td>${hms(t.ts_event)}</td><td>${t.price.toFixed(decimals)}</td><td>${t.size}</td><td>${t.side}</td></tr>`)
      .join("")}</tbody></table>`;
  }
}
