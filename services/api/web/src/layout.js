// The page shell: header (instrument, timeframe, footprint mode, connection, last price) and
// the panels, each with a title and a state line for missing, stale or invalid data.

export const TIMEFRAMES = ["1m", "5m", "15m", "1h", "4h", "1D"];

const PANELS = [
  ["chart", "Price"],
  ["footprint", "Footprint"],
  ["profile", "Volume profile"],
  ["heatmap", "Book heatmap"],
  ["ladder", "DOM ladder"],
  ["delta", "Cumulative delta"],
  ["tape", "Time & sales"],
  ["signals", "Signals"],
  ["status", "Strategy status"],
  ["scanner", "Scanner"],
  ["micro", "Microstructure"],
  ["perf", "Performance (journal)"],
];

export function buildShell(root) {
  root.innerHTML = `
  <header class="top">
    <span class="brand">OrderFlow</span>
    <select id="symbol" aria-label="instrument"></select>
    <span class="tfs" role="group" aria-label="timeframe">${TIMEFRAMES.map((t) => `<button data-tf="${t}">${t}</button>`).join("")}</span>
    <span class="modes" role="group" aria-label="footprint cells">
      <button data-mode="bidask">bid×ask</button><button data-mode="delta">delta</button><button data-mode="volume">volume</button>
    </span>
    <span id="last" class="last">–</span>
    <span id="bar-delta" class="muted"></span>
    <span id="feed" class="badge">connecting</span>
  </header>
  <main class="grid">${PANELS.map(
    ([id, title]) => `<section class="panel" id="p-${id}" data-state="empty"><h2>${title}<span class="state"></span></h2><div class="body" id="${id}" data-reason="no data yet"></div></section>`,
  ).join("")}</main>
  <div id="token-dialog" class="overlay" hidden>
    <form id="token-form"><h2>OrderFlow</h2><p>This dashboard needs the API token (OF_API_TOKEN; <code>make run</code> prints it).</p>
    <input id="token-input" type="password" autocomplete="off" placeholder="API token" required>
    <button type="submit">Open</button><p id="token-error" class="warn"></p></form>
  </div>`;
}

// "ok", or a reason shown in the panel's title bar and over its body
export function setPanelState(id, state, reason = "") {
  const el = document.getElementById(`p-${id}`);
  if (!el) return;
  el.dataset.state = state;
  el.querySelector(".state").textContent = state === "ok" ? "" : reason;
  el.querySelector(".body").dataset.reason = state === "ok" ? "" : reason || "no data yet";
}
