// The few calls the pages make to callwatch's HTTP API. The session is the `cw_token` cookie
// the API sets at login, so <audio> range requests and the board websocket carry it too.
import { t } from "./i18n.js";

export class HttpError extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}: ${detail}`);
    this.status = status;
  }
}

export async function api(path, { method = "GET", body, redirect = true } = {}) {
  // The header tells the API this came from our pages (cookie requests that change state need
  // it: cross-site CSRF cannot add it).
  const init = { method, credentials: "same-origin", headers: { "X-Callwatch-Request": "1" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401 && redirect) {
    toLogin();
    throw new HttpError(401, "not signed in");
  }
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new HttpError(r.status, (data && data.detail) || r.statusText);
  return data;
}

// Who is signed in ({username, role}); sends the browser to the login page when nobody is.
export async function me() {
  return api("/api/me");
}

export function toLogin() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.href = `/login?next=${next}`;
}

export async function login(username, password) {
  return api("/api/login", { method: "POST", body: { username, password }, redirect: false });
}

export async function logout() {
  try {
    await fetch("/api/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-Callwatch-Request": "1" },
    });
  } finally {
    location.href = "/login";
  }
}

// Header: who is signed in, links to the pages this role may open, sign out.
export function header(user) {
  const el = document.getElementById("who");
  if (!el || !user) return;
  el.textContent = `${user.username} (${user.role})`;
  const replay = document.getElementById("nav-replay");
  if (replay) replay.hidden = !["qa", "admin"].includes(user.role);
  const out = document.getElementById("sign-out");
  if (out) {
    out.textContent = t("sign_out");
    out.onclick = logout;
  }
}

export function fmtDuration(ms) {
  if (ms == null) return "–";
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
