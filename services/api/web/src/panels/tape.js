// Time & sales: the latest trades, newest first; the analytics stage's big trades (those its
// footprint bars list) highlighted.

import { esc, hms } from "../html.js";

export class Tape {
  constructor(host) {
    this.host = host;
    this.rows = [];
    this.seen = new Set();
    this.bigSeen = -1;
  }

  reset() {
    this.rows = [];
    this.seen.clear();
    this.bigSeen = -1;
    this.host.innerHTML = "";
  }

  // big: Set of `${ts_event}|${price}` of the big trades of the latest footprint bars
  add(trades, decimals, big) {
    const fresh = trades.filter((t) => !this.seen.has(t.trade_id));
    if (!fresh.length && big.size === this.bigSeen) return;
    this.bigSeen = big.size;
    for (const t of fresh) this.seen.add(t.trade_id);
    this.rows = fresh.concat(this.rows).sort((a, b) => b.ts_event - a.ts_event).slice(0, 80);
    this.seen = new Set(this.rows.map((t) => t.trade_id));
    this.host.innerHTML = `<table class="tape"><thead><tr><th>time</th><th>price</th><th>size</th><th>side</th></tr></thead><tbody>${this.rows
      .map((t) => `<tr class="${t.side === "buy" ? "up" : "down"}${big.has(`${t.ts_event}|${t.price}`) ? " big" : ""}" data-trade-id="${esc(t.trade_id)}"><td>${hms(t.ts_event)}</td><td>${t.price.toFixed(decimals)}</td><td>${t.size}</td><td>${t.side}</td></tr>`)
      .join("")}</tbody></table>`;
  }
}
