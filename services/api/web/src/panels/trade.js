// The trade state under the strategy status: the latest trade of the instrument from its
// trade events (entry, current stop, target, break-even / trail moves, exit and its R).

import { dirClass, dirText, esc, hms, num } from "../html.js";

const MOVES = ["entry", "breakeven", "trail"];

export class TradeState {
  constructor(host) {
    this.host = host;
    this.events = new Map(); // event_id → event
  }

  reset() {
    this.events.clear();
    this.render(2);
  }

  add(list, decimals) {
    for (const e of list) if (e.trade_id && e.event_id) this.events.set(e.event_id, e);
    this.render(decimals);
  }

  // the events of the newest trade that entered, oldest first
  latest() {
    const all = [...this.events.values()].sort((a, b) => a.ts_event - b.ts_event);
    const last = all.filter((e) => e.kind === "entry").pop();
    return last ? all.filter((e) => e.trade_id === last.trade_id) : [];
  }

  render(d) {
    const ev = this.latest();
    if (!ev.length) {
      this.host.innerHTML = `<div class="empty">no trade yet</div>`;
      return;
    }
    const entry = ev.find((e) => e.kind === "entry"); // after the setup's watch / arm events
    const exit = ev.find((e) => e.kind === "exit");
    const stop = ev.filter((e) => MOVES.includes(e.kind)).pop().stop;
    const moves = ev.filter((e) => e.kind === "breakeven" || e.kind === "trail");
    const state = exit ? "closed" : "open";
    const attrs = `data-trade-id="${esc(entry.trade_id)}" data-state="${state}" data-entry="${entry.price}" data-stop="${stop}"`
      + (exit ? ` data-exit="${exit.price}" data-r="${exit.r_multiple ?? ""}"` : "");
    this.host.innerHTML = `<div class="trade ${dirClass(entry.direction)}" ${attrs}>
      <b>${state === "open" ? "OPEN" : "CLOSED"}</b> <span class="${dirClass(entry.direction)}">${dirText(entry.direction)}</span>
      ${entry.grade ? `<span class="grade">${esc(entry.grade)}</span>` : ""} <span class="muted">${hms(entry.ts_event)} · ${esc(entry.trade_id)}</span>
      <div>entry ${num(entry.price, d)} · SL ${num(stop || null, d)} · TP ${num(entry.target || null, d)}</div>
      <div class="muted">${moves.map((m) => `${m.kind === "breakeven" ? "BE" : "trail"} → ${num(m.stop, d)} (${hms(m.ts_event)})`).join(" · ") || "stop not moved"}</div>
      ${exit ? `<div>exit ${num(exit.price, d)} · ${esc(exit.reason)} · R ${num(exit.r_multiple, 2)} (${hms(exit.ts_event)})</div>` : ""}</div>`;
  }
}
