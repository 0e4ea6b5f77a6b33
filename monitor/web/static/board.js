// The live call board: a websocket feed of call cards, KPIs and alerts (see monitor/board).
// The server sends a snapshot on connect and coalesced updates after; a gap in `seq` or a
// lost connection makes the page resynchronise from a fresh snapshot.
import { api, esc, fmtDuration, header, me } from "./api.js";
import { ALERT_KINDS, gradeText, lang, locale, named, t, translatePage } from "./i18n.js";

const cards = new Map(); // call_id -> card json
const alerts = new Map(); // alert id -> alert json (feed order kept by `feedOrder`)
let feedOrder = [];
const FEED_MAX = 100; // alerts kept in the feed (the oldest go first)
let lastSeq = 0;
let user = null;
let ws = null;
let retryMs = 500;
const $ = (id) => document.getElementById(id);

function meter(label, value, unit = "") {
  const v = value == null ? "–" : `${value}${unit}`;
  return `<span class="meter"><i>${esc(label)}</i> <b>${esc(v)}</b></span>`;
}

function partyBlock(name, p) {
  const lines = p.lines
    .map((l) => `<li data-start-ms="${l.start_ms}" data-end-ms="${l.end_ms}"${
      l.late ? ` class="late" title="${esc(t("late_title"))}"` : ""}>${esc(l.text)}${
      l.late ? ` <i class="late-tag">${esc(t("late"))}</i>` : ""}</li>`)
    .join("");
  const ratio = p.talk_ratio == null ? null : Math.round(p.talk_ratio * 100);
  return `<div class="party" data-party="${esc(name)}">
    <div class="party-name">${esc(t(name))}</div>
    <ul class="lines">${lines}</ul>
    <div class="meters">${meter(t("level"), p.level_dbov, " dB")}${meter(t("snr"), p.snr_db, " dB")}${
      meter(t("clarity"), p.clarity)}${meter(t("talk"), ratio, "%")}</div>
  </div>`;
}

function cardHtml(c) {
  const parties = Object.entries(c.parties).map(([n, p]) => partyBlock(n, p)).join("");
  const checks = c.checklist
    .map((s) => `<li class="check ${s.state}" data-stage="${esc(s.stage)}">${esc(t(s.stage))} ${
      s.state === "ok" ? "✓" : s.state === "missed" ? "✗" : s.state === "not_said" ? esc(t("not_said")) : "…"}</li>`)
    .join("");
  const badges = c.alerts
    .map((a) => `<span class="badge ${esc(a.severity)} ${esc(a.state)}" data-alert-id="${a.id}">${
      esc(named("ak", a.kind))}</span>`)
    .join("");
  const fmt = (c.format_suspect || []).length
    ? `<span class="badge critical format-suspect" title="${esc(c.format_suspect.map((r) => t(r)).join(", "))}">${
      esc(t("format_suspect"))}</span>`
    : "";
  const da = c.dead_air;
  const grade = c.grade ? `<span class="grade g-${esc(c.grade)}">${esc(gradeText(c.grade))}</span>` : "";
  const pending = c.transcripts_pending
    ? `<span class="pending">${esc(t("transcripts_pending"))}</span>` : "";
  const ended = c.status === "interrupted" // said plainly: why the call ended early
    ? `<span class="ended-reason">${esc(t("st_interrupted"))} · ${esc(named("er", c.end_reason))}</span>` : "";
  return `<div class="card-head">
      <span class="agent"><i>${esc(t("agent"))}</i> ${esc(c.agent ?? "–")}</span>
      <span class="queue"><i>${esc(t("queue"))}</i> ${esc(c.queue ?? "–")}</span>
      <span class="caller"><i>${esc(t("caller"))}</i> ${esc(c.caller ?? "–")}</span>
      <span class="duration" data-started="${esc(c.started_at)}">${fmtDuration(duration(c))}</span>
      ${grade}${pending}${ended}
    </div>
    <div class="parties">${parties}</div>
    <div class="card-foot">
      <ul class="checklist">${checks}</ul>${c.no_agent_leg ? `<span class="muted no-agent-leg">${esc(t("no_agent_leg"))}</span>` : ""}
      <span class="dead-air ${da.now ? "now" : ""}">${esc(t("dead_air"))} ${fmtDuration(da.total_ms)}${
        da.now ? ` · ${esc(t("dead_air_now"))}` : ""}</span>
      <span class="badges">${fmt}${badges}</span>
    </div>`;
}

function duration(c) {
  if (c.duration_ms != null) return c.duration_ms;
  return Date.now() - Date.parse(c.started_at);
}

function visible(c) {
  const q = $("filter-queue").value;
  const a = $("filter-agent").value;
  return (!q || c.queue === q) && (!a || c.agent === a);
}

function upsert(c) {
  cards.set(c.call_id, c);
  let el = document.querySelector(`.call[data-call-id="${CSS.escape(c.call_id)}"]`);
  if (!el) {
    el = document.createElement("article");
    el.className = "call card";
    el.dataset.callId = c.call_id;
    $("calls").appendChild(el);
  }
  el.innerHTML = cardHtml(c);
  el.classList.toggle("ended", c.status !== "active");
  el.hidden = !visible(c);
}

function remove(callId) {
  cards.delete(callId);
  const el = document.querySelector(`.call[data-call-id="${CSS.escape(callId)}"]`);
  if (!el) return;
  el.classList.add("leaving"); // fades out (CSS), then goes
  setTimeout(() => el.remove(), 1500);
  refreshChrome();
}

function refreshChrome() {
  $("no-calls").hidden = cards.size > 0;
  for (const [id, values] of [
    ["filter-queue", [...new Set([...cards.values()].map((c) => c.queue).filter(Boolean))]],
    ["filter-agent", [...new Set([...cards.values()].map((c) => c.agent).filter(Boolean))]],
  ]) {
    const sel = $(id);
    const keep = sel.value;
    const opts = [""].concat(values.sort());
    if (keep && !opts.includes(keep)) opts.push(keep);
    const html = opts.map((v) => `<option value="${esc(v)}">${esc(v || t("all"))}</option>`).join("");
    if (sel.innerHTML !== html) {
      sel.innerHTML = html;
      sel.value = keep;
    }
  }
}

function setKpis(k) {
  $("kpi-active").textContent = k.active_calls;
  $("kpi-aht").textContent = k.avg_handle_ms == null ? "–" : fmtDuration(k.avg_handle_ms);
  $("kpi-alerts").textContent = k.open_alerts;
  $("kpi-compliance").textContent = k.compliance_rate == null ? "–" : `${k.compliance_rate}%`;
  $("kpi-ni").textContent = k.needs_improvement;
}

function putAlert(a) {
  alerts.set(a.id, a);
  feedOrder = feedOrder.filter((i) => i !== a.id);
  feedOrder.push(a.id);
  for (const old of feedOrder.splice(0, Math.max(0, feedOrder.length - FEED_MAX))) alerts.delete(old);
  drawFeed();
}

// The alert feed, grouped per call (the call with the newest alert first): who the call is
// (agent / queue / caller), one click to its live card or its replay, and each alert's
// plain-language title, severity, wall time and media time. Filtered by severity and kind.
function drawFeed() {
  const canAck = user && ["supervisor", "admin"].includes(user.role);
  const canReplay = user && ["qa", "admin"].includes(user.role);
  const sev = $("alert-severity").value;
  const kind = $("alert-kind").value;
  const groups = new Map(); // call_id -> alerts, newest first
  for (const id of [...feedOrder].reverse()) {
    const a = alerts.get(id);
    if (!a || (sev && a.severity !== sev) || (kind && a.kind !== kind)) continue;
    if (!groups.has(a.call_id)) groups.set(a.call_id, []);
    groups.get(a.call_id).push(a);
  }
  const item = (a) => {
    const ack = canAck && a.state === "open"
      ? `<button class="ack" data-alert-id="${a.id}">${esc(t("acknowledge"))}</button>` : "";
    const party = a.party ? ` · ${esc(t(a.party))}` : "";
    const wall = a.raised_at ? new Date(a.raised_at).toLocaleTimeString(locale()) : "";
    const media = a.media_start_ms == null ? "" : `${t("in_call")} ${fmtDuration(a.media_start_ms)}`;
    const msg = lang() === "en" && a.message ? `<div class="msg">${esc(a.message)}</div>` : "";
    return `<li class="alert ${esc(a.severity)} ${esc(a.state)}" data-alert-id="${a.id}" data-kind="${
      esc(a.kind)}" title="${esc(a.message ?? "")}">
      <b class="title">${esc(named("ak", a.kind))}</b>${party}
      <span class="sev ${esc(a.severity)}">${esc(t(a.severity))}</span> <span class="state">${esc(t(a.state))}</span>
      <div class="when"><time class="wall">${esc(wall)}</time> <span class="media">${esc(media)}</span></div>${msg}${ack}</li>`;
  };
  $("alert-feed").innerHTML = [...groups].map(([callId, list]) => {
    const c = cards.get(callId);
    const a = list[0];
    const who = [
      `${t("agent")} ${c?.agent ?? a.agent_id ?? "—"}`,
      `${t("queue")} ${c?.queue ?? a.queue ?? "—"}`,
      `${t("caller")} ${c?.caller ?? a.caller ?? "—"}`,
    ].join(" · ");
    const live = c && c.status === "active";
    const link = live
      ? `<a class="to-card" href="#" data-call-id="${esc(callId)}">${esc(t("live_card"))}</a>`
      : canReplay ? `<a class="to-replay" href="/replay?call=${encodeURIComponent(callId)}">${esc(t("replay"))}</a>` : "";
    return `<li class="alert-group" data-call-id="${esc(callId)}"><div class="who">${esc(who)} ${link}</div>
      <ul>${list.map(item).join("")}</ul></li>`;
  }).join("");
}

function alertFilters() {
  $("alert-severity").innerHTML = ["", "critical", "warning", "info"]
    .map((v) => `<option value="${v}">${esc(v ? t(v) : t("all"))}</option>`).join("");
  $("alert-kind").innerHTML = [`<option value="">${esc(t("all"))}</option>`]
    .concat(ALERT_KINDS.map((k) => `<option value="${k}">${esc(named("ak", k))}</option>`)).join("");
  for (const id of ["alert-severity", "alert-kind"]) $(id).addEventListener("change", drawFeed);
}

function onSnapshot(msg) {
  for (const el of document.querySelectorAll(".call")) el.remove();
  cards.clear();
  alerts.clear();
  feedOrder = [];
  for (const c of msg.calls) upsert(c);
  for (const a of msg.alerts) putAlert(a);
  setKpis(msg.kpis);
  lastSeq = msg.seq;
}

function onDelta(msg) {
  if (msg.seq <= lastSeq) return; // sent before the snapshot we hold: already in it
  if (msg.seq !== lastSeq + 1) { // missed something (server dropped us behind): start over
    ws.send(JSON.stringify({ type: "resync" }));
    lastSeq = msg.seq;
    return;
  }
  lastSeq = msg.seq;
  if (msg.type === "call") upsert(msg.call);
  else if (msg.type === "remove") remove(msg.call_id);
  else if (msg.type === "kpis") setKpis(msg.kpis);
  else if (msg.type === "alert") putAlert(msg.alert);
}

// A frame is a snapshot (an object) or one tick's deltas (an array, oldest first): the page
// is redrawn once per frame, not once per message.
function onFrame(data) {
  const msgs = Array.isArray(data) ? data : [data];
  for (const msg of msgs) {
    if (msg.type === "snapshot") onSnapshot(msg);
    else onDelta(msg);
  }
  refreshChrome();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/board/ws`);
  ws.onopen = () => {
    retryMs = 500;
    const c = $("conn");
    c.textContent = t("connected");
    c.className = "conn up";
  };
  ws.onmessage = (ev) => onFrame(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    const c = $("conn");
    c.textContent = t("disconnected");
    c.className = "conn down";
    if (ev.code === 4401) return void (location.href = "/login?next=/board");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 8000);
  };
}

// The server's state (GET /api/health): "storage degraded" while the database takes no
// writes, an "overloaded" badge, and how far transcripts lag, said plainly whenever they are
// noticeably behind.
async function pollHealth() {
  const el = $("load");
  try {
    const r = await fetch("/api/health", { cache: "no-store" });
    const h = await r.json();
    const lag = h.asr ? h.asr.lag_s : 0;
    const behind = lag >= 2 ? `${t("transcripts_behind")} ${Math.round(lag)} s` : "";
    const storage = h.storage && h.storage.status === "degraded" ? t("storage_degraded") : "";
    el.textContent = [storage, h.overloaded ? t("overloaded") : "", behind].filter(Boolean).join(" · ");
    el.className = storage ? "load degraded" : h.overloaded ? "load overloaded" : "load lagging";
    el.hidden = !el.textContent;
    el.dataset.state = h.status;
  } catch (e) {
    el.hidden = true;
  }
}

async function main() {
  translatePage();
  document.title = `callwatch · ${t("title_board")}`;
  user = await me();
  header(user);
  refreshChrome();
  for (const id of ["filter-queue", "filter-agent"]) {
    $(id).addEventListener("change", () => {
      for (const c of cards.values()) upsert(c);
    });
  }
  alertFilters();
  $("alert-feed").addEventListener("click", async (ev) => {
    const go = ev.target.closest("a.to-card");
    if (go) { // the live card: into view, and flashed so the eye finds it
      ev.preventDefault();
      const el = document.querySelector(`.call[data-call-id="${CSS.escape(go.dataset.callId)}"]`);
      if (el) {
        el.hidden = false;
        el.scrollIntoView({ block: "center" });
        el.classList.remove("flash");
        void el.offsetWidth;
        el.classList.add("flash");
      }
      return;
    }
    const b = ev.target.closest("button.ack");
    if (!b) return;
    b.disabled = true;
    try {
      await api(`/api/alerts/${b.dataset.alertId}/acknowledge`, { method: "POST" });
    } catch (e) {
      b.disabled = false;
      console.error(e);
    }
  });
  setInterval(() => { // durations tick locally between updates
    for (const el of document.querySelectorAll(".call:not(.ended) .duration")) {
      el.textContent = fmtDuration(Date.now() - Date.parse(el.dataset.started));
    }
  }, 1000);
  pollHealth();
  setInterval(pollHealth, 2000);
  window.cwBoard = { cards, alerts, reconnect: () => ws && ws.close() }; // for tests
  connect();
}

main();
