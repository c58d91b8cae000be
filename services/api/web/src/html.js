// Tiny HTML helpers: escaping, number and time formats.

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
export const num = (v, d = 2) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(d));
export function hms(ns) {
  if (!ns) return "–";
  return new Date(ns / 1e6).toISOString().slice(11, 19);
}
export const dirText = (d) => (d === 1 || d === "long" ? "LONG" : d === -1 || d === "short" ? "SHORT" : "–");
export const dirClass = (d) => (d === 1 || d === "long" ? "up" : d === -1 || d === "short" ? "down" : "");
