// The API client: the bearer token (URL fragment or the token form, kept in sessionStorage),
// REST with the Authorization header, and the WebSocket (token in its first message).

const KEY = "orderflow.token";

export class Unauthorized extends Error {}

export function tokenFromFragment() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (!m) return null;
  const token = decodeURIComponent(m[1]);
  sessionStorage.setItem(KEY, token);
  history.replaceState(null, "", location.pathname + location.search); // out of the address bar
  return token;
}

export const storedToken = () => sessionStorage.getItem(KEY);
export const saveToken = (t) => sessionStorage.setItem(KEY, t);
export const forgetToken = () => sessionStorage.removeItem(KEY);

export async function get(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== undefined && v !== null) q.set(k, String(v));
  }
  const url = q.size ? `${path}?${q}` : path;
  const res = await fetch(url, { headers: { Authorization: `Bearer ${storedToken() ?? ""}` } });
  if (res.status === 401) throw new Unauthorized((await res.json()).error ?? "unauthorized");
  if (!res.ok) throw new Error(`${url}: ${res.status} ${(await res.text()).slice(0, 200)}`);
  return res.json();
}

// One WebSocket for the page: re-subscribes after reconnecting; handlers by channel.
export class Live {
  constructor(onMessage, onState) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.wanted = null; // {channels, symbols}
    this.ws = null;
    this.retry = 500;
    this.closedByUs = false;
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => {
      ws.send(JSON.stringify({ op: "auth", token: storedToken() ?? "" }));
      this.retry = 500;
      this.onState("connected");
      if (this.wanted) ws.send(JSON.stringify({ op: "subscribe", ...this.wanted }));
    };
    ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      if (ws !== this.ws || this.closedByUs) return;
      if (ev.code === 4401) {
        this.onState("unauthorized", ev.reason);
        return;
      }
      this.onState("reconnecting", ev.reason || `closed (${ev.code})`);
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
  }

  subscribe(channels, symbols) {
    const old = this.wanted;
    this.wanted = { channels, symbols };
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    if (old) this.ws.send(JSON.stringify({ op: "unsubscribe", ...old }));
    this.ws.send(JSON.stringify({ op: "subscribe", channels, symbols }));
  }

  close() {
    this.closedByUs = true;
    this.ws?.close();
  }
}
