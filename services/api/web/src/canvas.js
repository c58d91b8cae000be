// Canvas panels: a device-pixel-sized canvas per panel, drawn only when dirty, in one
// requestAnimationFrame loop that records how long each frame's drawing took.

export const frameTimes = []; // ms of drawing per animation frame that drew something
export const panelTimes = {}; // host id -> ms of its draws (the last 200)
const panels = new Set();
let scheduled = false;

export class CanvasPanel {
  constructor(host) {
    this.host = host;
    this.canvas = document.createElement("canvas");
    host.appendChild(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.w = 0;
    this.h = 0;
    this.dirty = true;
    this.draws = 0;
    new ResizeObserver(() => this.invalidate()).observe(host);
    panels.add(this);
    schedule();
  }

  invalidate() {
    this.dirty = true;
    schedule();
  }

  fit() {
    const r = this.host.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.floor(r.width));
    const h = Math.max(1, Math.floor(r.height));
    if (w !== this.w || h !== this.h) {
      this.w = w;
      this.h = h;
      this.canvas.width = w * dpr;
      this.canvas.height = h * dpr;
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${h}px`;
    }
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  paint() {
    this.fit();
    lastFont.delete(this.ctx); // a resize resets the context's state
    this.ctx.clearRect(0, 0, this.w, this.h);
    this.draw(this.ctx, this.w, this.h);
    this.draws += 1;
    this.canvas.dataset.draws = String(this.draws);
  }

  draw() {}
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(frame);
}

function frame() {
  scheduled = false;
  const t0 = performance.now();
  let drew = false;
  for (const p of panels) {
    if (!p.dirty) continue;
    p.dirty = false;
    drew = true;
    const p0 = performance.now();
    try {
      p.paint();
    } catch (err) {
      console.error("panel draw failed", err);
    }
    const list = (panelTimes[p.host.id] ??= []);
    list.push(performance.now() - p0);
    if (list.length > 200) list.shift();
  }
  if (drew) {
    frameTimes.push(performance.now() - t0);
    if (frameTimes.length > 5000) frameTimes.splice(0, 1000);
  }
}

// setting ctx.font parses the font each time: set it only when it changes
const lastFont = new WeakMap();

export function text(ctx, s, x, y, color, font = "11px sans-serif", align = "left") {
  ctx.fillStyle = color;
  if (lastFont.get(ctx) !== font) {
    ctx.font = font;
    lastFont.set(ctx, font);
  }
  ctx.textAlign = align;
  ctx.fillText(s, x, y);
}

export function fmtSize(v) {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a === 0) return "0";
  return v.toFixed(a >= 1 ? 2 : 3);
}

export function decimalsOf(step) {
  const s = String(step);
  if (s.includes("e-")) return Number(s.split("e-")[1]);
  return s.includes(".") ? s.split(".")[1].length : 0;
}
