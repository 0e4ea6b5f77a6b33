// QA replay: search calls, then one call's audio with lanes, transcript, markers, trace,
// scorecard and the QA review form. The audio streams from the API with range requests (the
// `cw_token` cookie authenticates them), so seeking anywhere starts playing at once.
import { api, esc, fmtDuration, header, HttpError, me } from "./api.js";
import { ALERT_KINDS, gradeText, locale, named, t, translatePage } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let durationMs = 1;
let lines = []; // transcript <li>s in start order, for the playback highlight

const list = (v) => (Array.isArray(v) ? v : []);
const EMPTY = "—"; // an empty cell says so

// ------------------------------------------------------------------ search
async function search(form) {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(form)) {
    if (!v) continue;
    q.set(k, k === "since" || k === "until" ? `${v}T00:00:00` : v); // dates: UTC midnight
  }
  q.set("limit", "100");
  const rows = await api(`/api/calls?${q}`);
  const items = Array.isArray(rows) ? rows : list(rows && rows.items);
  const cell = (v) => `<td>${v == null || v === "" ? EMPTY : esc(v)}</td>`;
  $("results").querySelector("tbody").innerHTML = items.map((c) => `<tr data-call-id="${esc(c.call_id)}">
    ${cell(new Date(c.started_at).toLocaleString(locale()))}${cell(c.agent_id)}${cell(c.queue)}${cell(c.caller)}
    ${cell(c.duration_ms == null ? null : fmtDuration(c.duration_ms))}
    <td class="status st-${esc(c.status)}">${esc(named("st", c.status))}</td>
    ${cell(c.score == null ? null : Math.round(c.score))}${cell(gradeText(c.grade))}
    <td><a href="/replay?call=${encodeURIComponent(c.call_id)}">${esc(t("open_call"))}</a></td></tr>`).join("");
}

// The alert filter lists the kinds there are (in the page's language), not free text.
function alertKinds() {
  $("alert-kind").innerHTML = [`<option value="">${esc(t("all"))}</option>`].concat(
    ALERT_KINDS.map((k) => `<option value="${esc(k)}">${esc(named("ak", k))}</option>`)).join("");
}

// ------------------------------------------------------------------ call page
const pct = (ms) => `${Math.max(0, Math.min(100, (100 * ms) / durationMs))}%`;
const span = (a, b) => `left:${pct(a)};width:calc(${pct(b)} - ${pct(a)})`;

function seek(ms) {
  const audio = $("audio");
  audio.currentTime = ms / 1000;
  highlight(ms);
}

const segmentsOf = (detail) => list(detail.transcript ?? detail.segments);

function lanes(detail, findings) {
  const parties = list(detail.parties).map((p) => p.party);
  if (!parties.length) parties.push("customer", "agent");
  $("lanes").innerHTML = parties.map((party) => {
    const regions = segmentsOf(detail).filter((s) => s.party === party)
      .map((s) => `<span class="r speech" style="${span(s.start_ms, s.end_ms)}"></span>`);
    for (const f of findings) {
      if (f.start_ms == null || f.end_ms == null) continue;
      if (f.kind === "dead_air" || (f.kind === "overtalk" && (f.party == null || f.party === party))) {
        regions.push(`<span class="r ${esc(f.kind)}" style="${span(f.start_ms, f.end_ms)}" title="${
          esc(t(f.kind))}"></span>`);
      }
    }
    return `<div class="lane-row"><span class="lane-label">${esc(t(party))}</span>
      <div class="lane" data-party="${esc(party)}">${regions.join("")}</div></div>`;
  }).join("");
}

function markers(findings, alerts) {
  const items = [];
  for (const a of alerts) {
    const ms = a.media_start_ms ?? 0;
    items.push({ ms, cls: `alert ${a.severity}`, kind: "alert", id: a.id, label: `${t("alert")}: ${named("ak", a.kind)}` });
  }
  for (const f of findings) {
    if (f.kind === "dead_air" || f.kind === "overtalk") continue; // drawn in the lanes
    const ms = f.start_ms ?? f.end_ms;
    if (ms == null) continue;
    const cls = f.source === "compliance" ? (f.kind === "phrase_matched" ? "hit" : "miss") : "quality";
    const stage = f.data && f.data.stage ? ` ${t(f.data.stage)}` : "";
    items.push({ ms, cls, kind: f.source, label: `${t(f.source)}: ${f.kind}${stage}` });
  }
  $("markers").innerHTML = items.map((m) => `<button class="marker ${esc(m.cls)}" data-kind="${esc(m.kind)}"
    ${m.id != null ? `data-alert-id="${m.id}"` : ""} data-ms="${m.ms}" style="left:${pct(m.ms)}"
    title="${esc(m.label)}"></button>`).join("");
}

function transcript(detail) {
  // Speech never transcribed (the ASR timed out or shed it) is listed where it was said.
  const missing = list(detail.transcript_missing).map((m) => ({ ...m, missing: true }));
  const segs = [...segmentsOf(detail), ...missing].sort((a, b) => a.start_ms - b.start_ms);
  const text = (s) => (s.missing
    ? `<i class="untranscribed" title="${esc(named("ev", s.reason))}">[${esc(t("untranscribed"))}]</i>`
    : esc(s.text));
  $("transcript").innerHTML = segs.map((s) => `<li class="line${s.missing ? " missing" : ""}" data-party="${esc(s.party)}"
    data-start-ms="${s.start_ms}" data-end-ms="${s.end_ms}"><span class="ts">${fmtDuration(s.start_ms)}</span>
    <b>${esc(t(s.party))}</b> ${text(s)}</li>`).join("");
  if (missing.length) {
    const ranges = missing.map((m) => `${fmtDuration(m.start_ms)}–${fmtDuration(m.end_ms)}`).join(", ");
    $("transcript").insertAdjacentHTML("afterbegin",
      `<li class="incomplete">${esc(t("transcript_incomplete"))} ${esc(ranges)}</li>`);
  }
  lines = [...$("transcript").querySelectorAll(".line")];
}

function highlight(ms) {
  let current = null;
  for (const li of lines) if (Number(li.dataset.startMs) <= ms) current = li;
  for (const li of lines) li.classList.toggle("current", li === current);
  const frac = Math.max(0, Math.min(1, ms / durationMs));
  $("playhead").style.left = `calc(78px + (100% - 78px) * ${frac})`; // lanes start after labels
}

function stageMark(s) {
  if (s.status === "passed") return ["ok", "✓"];
  if (s.status === "suspended") return ["ok", "–"];
  if (s.required === false) return ["not_said", t("not_said")]; // optional: no failure
  return ["missed", "✗"];
}

// Every deduction (points off its own score, and off the call score) and every grade cap.
function why(card) {
  if (!card) return "";
  const label = (l) => {
    // A quality finding's kind reads as its trace name ("slow response", "响应慢").
    const item = t(l.item) === l.item ? named("ev", l.item) : t(l.item);
    const kind = l.kind === "forbidden" ? t("forbidden_kind") : t(l.kind);
    const party = l.party ? ` · ${t(l.party)}` : "";
    const num = (v) => (Math.abs(v) >= 100 ? Math.round(v) : Number(Number(v).toPrecision(3)));
    const val = l.value == null ? "" : ` (${num(l.value)} ${l.unit} / ${num(l.threshold)})`;
    return `${t(l.source)}: ${item} – ${kind}${party}${val}`;
  };
  const lines = list(card.lines).map((l) => `<li class="ded"><span class="pts">−${
    esc(Number(l.points).toFixed(1))}</span> ${esc(label(l))} <span class="muted">(−${
    esc(Number(l.call_points).toFixed(1))} ${esc(t("on_call"))})</span></li>`);
  const caps = list(card.caps).map((c) => `<li class="cap">${esc(t("capped"))} ${
    esc(gradeText(c.grade))}: ${esc(t(`cap_${c.reason}`))} (${esc(list(c.items).map((i) => t(i)).join(", "))})</li>`);
  const notes = list(card.notes).map((n) => `<li class="note">${esc(t(n))}</li>`);
  const body = notes.concat(lines, caps).join("") || `<li class="muted">${esc(t("no_deductions"))}</li>`;
  return `<h3>${esc(t("why"))}</h3><ul class="why">${body}</ul>`;
}

function scorecard(detail) {
  const row = (k, v) => `<tr><th>${esc(k)}</th><td>${esc(v ?? "–")}</td></tr>`;
  const r = (v) => (v == null ? null : Math.round(v));
  const comp = detail.compliance || {};
  const stages = list(comp.stages).map((s) => {
    const [cls, mark] = stageMark(s);
    return `<li class="check ${cls}" data-stage="${esc(s.stage)}" title="${esc(s.status)}">${
      esc(t(s.stage) === s.stage ? s.title || s.stage : t(s.stage))} ${esc(mark)}</li>`;
  }).join("");
  $("scorecard").innerHTML = `<div class="grade big g-${esc(detail.grade ?? "none")}">${esc(gradeText(detail.grade) || "–")}</div>
    <table>${row(t("score"), r(detail.score))}${row(t("quality"), r(detail.quality_score))}${
      row(t("compliance"), r(detail.compliance_score))}</table><ul class="checklist">${stages}</ul>${why(detail.scorecard)}`;
}

function trace(detail) {
  $("trace").innerHTML = list(detail.trace).map((e) => `<li data-ms="${e.media_ms ?? ""}">
    <span class="ts">${e.media_ms == null ? "" : fmtDuration(e.media_ms)}</span> <span class="ev" data-kind="${
      esc(e.kind)}">${esc(named("ev", e.kind))}</span>${
      e.party ? ` · ${esc(t(e.party))}` : ""}</li>`).join("");
}

function reviews(items) {
  $("reviews").innerHTML = items.map((r) => `<li class="review"><b>${esc(r.score ?? "–")}</b> ${
    esc(r.comment ?? "")} <span class="muted">${esc(r.username ?? "")} ${
      esc(r.created_at ? new Date(r.created_at).toLocaleString(locale()) : "")}</span></li>`).join("");
  const last = items[items.length - 1];
  if (last) {
    $("review-score").value = last.score ?? "";
    $("review-comment").value = last.comment ?? "";
  }
}

async function loadReviews(id) {
  reviews(list(await api(`/api/calls/${encodeURIComponent(id)}/reviews`)));
}

async function showCall(id) {
  $("call-view").hidden = false;
  const enc = encodeURIComponent(id);
  let detail;
  try {
    detail = await api(`/api/calls/${enc}`);
  } catch (e) {
    if (e instanceof HttpError && e.status === 404) {
      $("page-error").textContent = t("not_found");
      $("page-error").hidden = false;
      $("call-view").hidden = true;
      return;
    }
    throw e;
  }
  const findings = list(detail.findings);
  const alerts = list(detail.alerts);
  durationMs = detail.duration_ms || Math.max(1, ...segmentsOf(detail).map((s) => s.end_ms));
  $("call-head").innerHTML = `<span class="agent"><i>${esc(t("agent"))}</i> ${esc(detail.agent_id ?? "–")}</span>
    <span class="queue"><i>${esc(t("queue"))}</i> ${esc(detail.queue ?? "–")}</span>
    <span class="caller"><i>${esc(t("caller"))}</i> ${esc(detail.caller ?? "–")}</span>
    <span><i>${esc(t("started"))}</i> ${esc(new Date(detail.started_at).toLocaleString(locale()))}</span>
    <span><i>${esc(t("duration"))}</i> ${fmtDuration(detail.duration_ms)}</span>
    <span class="grade g-${esc(detail.grade ?? "none")}">${esc(gradeText(detail.grade))}</span>`;
  const audio = $("audio");
  audio.src = detail.recording_url || `/api/calls/${enc}/recording`;
  lanes(detail, findings);
  markers(findings, alerts);
  transcript(detail);
  scorecard(detail);
  trace(detail);
  await loadReviews(id);
  highlight(0);

  audio.addEventListener("timeupdate", () => highlight(audio.currentTime * 1000));
  $("transcript").addEventListener("click", (ev) => {
    const li = ev.target.closest(".line");
    if (li) seek(Number(li.dataset.startMs));
  });
  $("markers").addEventListener("click", (ev) => {
    const m = ev.target.closest(".marker");
    if (m) seek(Number(m.dataset.ms));
  });
  $("trace").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-ms]");
    if (li && li.dataset.ms !== "") seek(Number(li.dataset.ms));
  });
  $("lanes").addEventListener("click", (ev) => {
    const lane = ev.target.closest(".lane");
    if (!lane) return;
    const box = lane.getBoundingClientRect();
    seek(((ev.clientX - box.left) / box.width) * durationMs);
  });
  $("review-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const score = $("review-score").value;
    await api(`/api/calls/${enc}/reviews`, {
      method: "POST",
      body: { score: score === "" ? null : Number(score), comment: $("review-comment").value },
    });
    $("review-status").textContent = t("saved");
    await loadReviews(id);
  });
}

async function main() {
  translatePage();
  document.title = `callwatch · ${t("title_replay")}`;
  const user = await me();
  header(user);
  $("nav-board").hidden = !["supervisor", "admin"].includes(user.role);
  const id = params.get("call");
  if (id) {
    await showCall(id);
  } else {
    $("search-view").hidden = false;
    alertKinds();
    const form = $("search-form");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      search(form);
    });
    await search(form);
  }
  document.body.dataset.ready = "1"; // for tests: everything drawn
}

main().catch((e) => {
  $("page-error").textContent = String(e.message || e);
  $("page-error").hidden = false;
});
