// Signal cards (patterns and the aggregator's entries: grade, entry / SL / TP / RR, the
// evidence), the trade state and the six-step strategy status.

import { dirClass, dirText, esc, hms, num } from "../html.js";

export function rr(e) {
  if (!e.stop || !e.target) return null;
  const entry = e.entry_price || e.price;
  const risk = Math.abs(entry - e.stop);
  return risk > 0 ? Math.abs(e.target - entry) / risk : null;
}

export class Signals {
  constructor(host) {
    this.host = host;
    this.items = [];
  }

  reset() {
    this.items = [];
    this.render(2);
  }

  add(list, decimals) {
    const ids = new Set(this.items.map((i) => i.signal_id ?? i.event_id));
    for (const s of list) if (!ids.has(s.signal_id ?? s.event_id)) this.items.push(s);
    this.items.sort((a, b) => b.ts_event - a.ts_event);
    this.items = this.items.slice(0, 40);
    this.render(decimals);
  }

  render(decimals) {
    if (!this.items.length) {
      this.host.innerHTML = `<div class="empty">no signals yet</div>`;
      return;
    }
    this.host.innerHTML = this.items.map((s) => (s.type === "trade_event" ? this.event(s, decimals) : this.pattern(s, decimals))).join("");
  }

  pattern(s, d) {
    const ev = Object.entries(s.details ?? {})
      .slice(0, 6)
      .map(([k, v]) => `<span>${esc(k)}: ${esc(typeof v === "number" ? +v.toFixed(3) : v)}</span>`)
      .join("");
    return `<div class="card signal ${dirClass(s.direction)}" data-kind="pattern" data-id="${esc(s.signal_id)}">
      <b>${esc(s.pattern)}</b> <span class="${dirClass(s.direction)}">${dirText(s.direction)}</span>
      <span class="muted">${hms(s.ts_event)} · ${esc(s.timeframe)}</span>
      <div>@ ${num(s.price, d)} · strength ${num(s.strength, 2)}</div><div class="evidence">${ev}</div></div>`;
  }

  event(e, d) {
    const r = rr(e);
    return `<div class="card signal trade ${dirClass(e.direction)}" data-kind="${esc(e.kind)}" data-id="${esc(e.event_id)}">
      <b>${esc(e.kind.toUpperCase())}</b> <span class="${dirClass(e.direction)}">${dirText(e.direction)}</span>
      ${e.grade ? `<span class="grade">${esc(e.grade)}</span>` : ""} <span class="muted">${hms(e.ts_event)}</span>
      <div>${e.entry_price ? "entry" : "price"} ${num(e.entry_price || e.price || null, d)} · SL ${num(e.stop || null, d)} · TP ${num(e.target || null, d)} · RR ${num(r, 2)}</div>
      <div class="muted">${e.level_kind ? `${esc(e.level_kind)} @ ${num(e.level_price || null, d)} · ` : ""}score ${num(e.score, 1)}${e.r_multiple !== null && e.r_multiple !== undefined ? ` · R ${num(e.r_multiple, 2)}` : ""}</div>
      <div class="evidence">${esc(e.reason)}${e.signals?.length ? ` · evidence: ${e.signals.map(esc).join(", ")}` : ""}</div></div>`;
  }
}

export function renderStatus(host, st, decimals) {
  if (!st) {
    host.innerHTML = `<div class="empty">no strategy status yet</div>`;
    return;
  }
  const steps = st.steps ?? [];
  const names = ["Profile Framing", "Qualified Levels", "Price at Level", "Absorption Scan", "Entry Decision", "Trade Management"];
  host.innerHTML = `<div class="status-head"><b data-overall>${esc(st.overall ?? st.status)}</b> · phase ${esc(st.phase)} · priority ${esc(st.priority)}
    ${st.level_kind ? ` · ${esc(st.level_kind)} @ ${num(st.level_price, decimals)}` : ""}</div>
    <ol class="steps">${names
      .map((n, i) => {
        const s = typeof steps[i] === "string" ? steps[i] : steps[i]?.status ?? "inactive";
        return `<li class="step ${esc(s)}"><span>${esc(n)}</span><em>${esc(s)}</em></li>`;
      })
      .join("")}</ol>`;
}
