// Shared by the agent console and the supervisor dashboard: theme, sign-in, API calls, a reconnecting socket.

const TOKEN_KEY = "pivotal.token";
const THEME_KEY = "pivotal.theme";

export function applyTheme() {
  const saved = localStorage.getItem(THEME_KEY);
  const dark = saved ? saved === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}

export function toggleTheme() {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  localStorage.setItem(THEME_KEY, next);  // remembered per browser
  applyTheme();
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

export async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  const body = response.headers.get("Content-Type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const error = new Error(body?.detail || body?.title || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// The sign-in form: resolves once a token is held (a reload keeps it for the tab's life).
export function signIn(form, errorBox) {
  return new Promise((resolve) => {
    if (token()) return resolve(token());
    form.hidden = false;
    form.querySelector("input")?.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      errorBox.textContent = "";
      const data = new FormData(form);
      try {
        const answer = await api("/api/auth/login", { method: "POST",
          json: { email: data.get("email"), password: data.get("password") } });
        sessionStorage.setItem(TOKEN_KEY, answer.access_token);
        form.hidden = true;
        resolve(answer.access_token);
      } catch (error) {
        errorBox.textContent = error.message;
      }
    });
  });
}

// A websocket that reconnects with backoff. onOpen runs on every (re)connect; onFrame gets parsed frames.
export class Socket {
  constructor(path, { onFrame, onOpen, onStatus, onUnauthorized }) {
    this.path = path;
    this.onFrame = onFrame;
    this.onOpen = onOpen || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onUnauthorized = onUnauthorized || signOut;
    this.delay = 250;
    this.ws = null;
    this.stopped = false;
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${this.path}`, ["pivotal.v1", `bearer.${token()}`]);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => { opened = true; this.delay = 250; this.onStatus(true); this.onOpen(); };
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "error" && frame.code === "unauthorized") return this.onUnauthorized();
      this.onFrame(frame);
    };
    ws.onclose = async () => {
      this.onStatus(false);
      if (this.stopped) return;
      if (!opened) {  // refused at the upgrade: an expired or revoked token looks the same as a daemon away
        try { await api("/api/auth/me"); } catch (error) { if (error.status === 401) return this.onUnauthorized(); }
      }
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    };
  }

  send(frame) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  get open() { return this.ws?.readyState === WebSocket.OPEN; }
}

let toastTimer = null;
export function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
}

export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(sec)}` : `${two(m)}:${two(sec)}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
