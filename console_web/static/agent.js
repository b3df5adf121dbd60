// The agent console: sign in, join a campaign, connect the softphone, take calls, save outcomes.
// Protocol: docs/agent-protocol.md. A disposition waits in localStorage until the daemon acknowledges it and is
// resent (same id, same attempt: the daemon saves it once) after a reconnect or a reload.

import { api, applyTheme, duration, el, signIn, signOut, Socket, toast, toggleTheme } from "./common.js";

const $ = (id) => document.getElementById(id);
const LINE_DESTINATION = "sip:pivotal@sip.telnyx.com";  // any destination: the credential connection parks it

const S = {
  userId: null,
  campaigns: [],
  campaignId: null,
  state: "offline", since: Date.now(), reason: null, owes: false, pendingPause: null,
  lineUp: false,
  rtc: null, line: null, lineWanted: false,
  call: null,          // {attemptId, state, startedAt, endedAt}
  pop: null,           // the screen pop or owed attempt the outcome form is for
  owed: [],            // attempts owed from earlier calls, each with its catalogue
  chosen: null,        // the disposition chosen in the form
  preview: null,
  seq: 0,
};
let socket = null;

applyTheme();
$("theme").addEventListener("click", toggleTheme);
$("signout").addEventListener("click", signOut);

const pendingKey = () => `pivotal.pending.${S.userId}`;
const pending = () => JSON.parse(localStorage.getItem(pendingKey()) || "null");
const nextId = () => `c${Date.now().toString(36)}${(S.seq++).toString(36)}`;

function send(frame) {
  if (!socket?.send(frame)) toast("Not connected: trying again in a moment");
}

// -- socket ------------------------------------------------------------------------------------------------

async function start() {
  await signIn($("signin"), $("signin-error"));
  $("signout").hidden = false;
  api("/api/auth/me").then((me) => { $("who").textContent = me.display_name || me.email; }).catch(() => {});
  socket = new Socket("/ws/agent", {
    onFrame: handle,
    onStatus: (up) => { $("conn").dataset.up = up; $("conn").textContent = up ? "connected" : "reconnecting…"; },
  });
}

function handle(frame) {
  const on = {
    welcome, state, softphone, screen_pop: screenPop, history, call: callFrame, owed, preview, ack, error: refused,
    pong: () => {},
  }[frame.type];
  if (on) on(frame);
}

function listCampaigns(list) {
  if (JSON.stringify(list) === JSON.stringify(S.campaigns) && $("campaign").options.length) return;  // keep an open list open
  S.campaigns = list;
  const select = $("campaign");
  const chosen = select.value;
  select.replaceChildren(...list.map((c) => el("option", { value: c.id }, `${c.name} (${c.mode})`)));
  if (!list.length) select.append(el("option", { value: "" }, "No campaign is running yet"));
  if (list.some((c) => String(c.id) === chosen)) select.value = chosen;
  $("join-button").disabled = !list.length;
}

// While the agent chooses, the list follows campaigns being started and stopped.
setInterval(() => { if (!$("join").hidden && socket?.open) socket.send({ type: "campaigns", id: nextId() }); }, 3000);

function welcome(frame) {
  S.userId = frame.user_id;
  listCampaigns(frame.campaigns);
  // The state frame that follows says whether a session resumes (nothing is hidden here: a field being typed
  // in keeps its focus across a reconnect, so keys never turn into shortcuts).
  S.resendHeld = true;
}

// An outcome sent before the connection dropped goes again once the session is back (the daemon saves it once).
function resendHeld() {
  const held = pending();
  S.resendHeld = false;
  if (held) socket.send(held);
}

function showJoined(joined) {
  $("join").hidden = joined;
  $("console").hidden = !joined;
}

function state(frame) {
  S.state = frame.state;
  S.since = Date.parse(frame.since);
  S.reason = frame.reason;
  S.owes = frame.owes_disposition;
  S.pendingPause = frame.pending_pause;
  S.campaignId = frame.campaign_id;
  const joined = frame.state !== "offline";
  showJoined(joined);
  if (joined && S.resendHeld) resendHeld();
  if (joined && S.call?.state === "connecting" && !S.owes && (frame.state === "ready" || frame.state === "paused")) {
    clearOutcome();  // a call that never reached us (the person left first): nothing to save
    clearCall();
  }
  if (joined) connectLine();
  else {
    disconnectLine();
    clearCall();
    clearOutcome();
    if (frame.reason && frame.reason !== "logout") toast(`Logged out of the campaign (${frame.reason.replaceAll("_", " ")})`);
  }
  render();
}

function softphone(frame) {
  S.lineUp = frame.connected;
  render();
}

function callFrame(frame) {
  const elapsed = (frame.talk_s || 0) * 1000;
  if (frame.state === "released") {  // the bridge failed or the person left before it: no outcome is owed
    if (S.pop?.attemptId === frame.attempt_id) clearOutcome();
    if (S.call?.attemptId === frame.attempt_id) clearCall();
    nextOwed();
    toast("The call was lost before it reached you");
  } else if (frame.state === "reserved") {
    S.call = { attemptId: frame.attempt_id, state: "connecting", startedAt: null, endedAt: null };
  } else if (frame.state === "bridged") {
    S.call = { attemptId: frame.attempt_id, state: "on call", startedAt: Date.now() - elapsed, endedAt: null };
  } else if (frame.state === "ended") {
    const startedAt = S.call?.attemptId === frame.attempt_id && S.call.startedAt ? S.call.startedAt : Date.now() - elapsed;
    S.call = { attemptId: frame.attempt_id, state: "ended", startedAt, endedAt: Date.now() };
    setMuted(false);
    setHeld(false);
  }
  render();
}

function screenPop(frame) {
  S.preview = null;
  const same = S.pop?.attemptId === frame.attempt_id;
  S.pop = { attemptId: frame.attempt_id, contactId: frame.contact_id, form: frame.form, dispositions: frame.dispositions };
  if (!S.call || S.call.attemptId !== frame.attempt_id) {
    S.call = { attemptId: frame.attempt_id, state: "connecting", startedAt: null, endedAt: null };
  }
  renderFacts($("contact"), frame.contact, ["first_name", "last_name", "job_title", "phone", "extension", "email", "country", "timezone"]);
  renderFacts($("account"), frame.account, ["name", "domain", "industry", "employee_count"]);
  $("script").textContent = frame.script || "";
  $("history").tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "Loading…")));
  $("pop").hidden = false;
  $("pop-empty").hidden = true;
  if (!same) showOutcome(frame.attempt_id, frame.form, frame.dispositions, describe(frame.contact));
  render();
}

function history(frame) {
  if (S.pop?.attemptId !== frame.attempt_id) return;
  const rows = frame.calls.map((c) => el("tr", {},
    el("td", { class: "mono" }, new Date(c.at).toLocaleString()),
    el("td", {}, c.campaign), el("td", {}, c.agent || "—"),
    el("td", {}, c.disposition || c.outcome || "—"),
    el("td", { class: "num" }, c.talk_s != null ? duration(c.talk_s * 1000) : "—"),
    el("td", {}, c.notes || "")));
  $("history").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "First call to this contact"))]));
}

function owed(frame) {
  if (S.owed.some((o) => o.attemptId === frame.attempt_id) || S.pop?.attemptId === frame.attempt_id) return;
  S.owed.push({ attemptId: frame.attempt_id, form: frame.form, dispositions: frame.dispositions });
  if (!S.pop) nextOwed();
}

function nextOwed() {
  const next = S.owed.shift();
  if (!next) return;
  S.pop = next;
  showOutcome(next.attemptId, next.form, next.dispositions, `an earlier call (#${next.attemptId}) still needs its outcome`);
  render();
}

function preview(frame) {
  S.preview = frame;
  $("preview-who").textContent = describe(frame.contact) + (frame.account?.name ? ` · ${frame.account.name}` : "");
  renderFacts($("contact"), frame.contact, ["first_name", "last_name", "job_title", "phone", "email", "country", "timezone"]);
  renderFacts($("account"), frame.account, ["name", "domain", "industry", "employee_count"]);
  $("script").textContent = frame.script || "";
  $("pop").hidden = false;
  $("pop-empty").hidden = true;
  render();
}

function ack(frame) {
  const held = pending();
  if (held && frame.id === held.id) {
    localStorage.removeItem(pendingKey());
    toast(frame.lead_id ? `Saved · lead #${frame.lead_id} created` : "Outcome saved");
    doneWith(held.attempt_id);
  } else if (frame.campaign_id && frame.session_id) {
    S.campaignId = frame.campaign_id;
  } else if (frame.campaigns) {
    listCampaigns(frame.campaigns);
  }
  render();
}

// The pop and call on screen are cleared only if they are the saved one's (a resent save may be answered while
// the agent is already on the next call).
function doneWith(attemptId) {
  if (S.pop?.attemptId === attemptId) clearOutcome();
  if (S.call?.attemptId === attemptId) clearCall();
  S.owed = S.owed.filter((o) => o.attemptId !== attemptId);
  if (!S.pop) nextOwed();
}

// Refusals that say nothing about the outcome itself: it stays held and goes again when the session is back.
const TRANSIENT = new Set(["not_joined", "not_running", "internal", "replaced", "unauthorized", "busy"]);

function refused(frame) {
  const held = pending();
  if (held && frame.id === held.id && !TRANSIENT.has(frame.code)) {
    localStorage.removeItem(pendingKey());
    if (frame.code === "already_disposed") {  // saved earlier with another outcome (another console)
      toast(frame.message);
      doneWith(held.attempt_id);
      return render();
    }
    $("dispo-error").textContent = frame.message;
    for (const problem of frame.fields || []) markField(problem.field, problem.message);
    render();
    return;
  }
  if (frame.code === "replaced") {  // another tab took the session: this one goes inert
    socket.stopped = true;
    S.replaced = true;
    document.body.inert = true;
    toast("This console was replaced by another one; reload to take it back");
    return;
  }
  toast(frame.message);
}

// -- softphone ---------------------------------------------------------------------------------------------

// One softphone client per generation: a leave, a rejoin or a lost socket starts a new generation, and every
// handler of an older one does nothing (no orphaned client keeps a line open).
let lineGeneration = 0;
let lineRetry = 2000;

async function connectLine() {
  if (S.lineWanted) return;
  S.lineWanted = true;
  const generation = ++lineGeneration;
  const current = () => generation === lineGeneration && S.lineWanted;
  const callIn = (rtc) => rtc.newCall({ destinationNumber: LINE_DESTINATION, audio: true, remoteElement: "remote-audio" });
  try {
    const phone = await api("/api/telephony/softphone");
    let RTC;
    if (phone.rtc_url) {
      RTC = (await import("./telnyx-shim.js")).TelnyxRTC;
    } else {
      await loadScript(phone.sdk_url);
      RTC = window.TelnyxWebRTC.TelnyxRTC;
    }
    if (!current()) return;
    const rtc = new RTC({ login_token: phone.login_token, host: phone.rtc_url || undefined });
    S.rtc = rtc;
    rtc.on("telnyx.ready", () => { if (current()) S.line = callIn(rtc); });
    rtc.on("telnyx.notification", (n) => {
      if (!current() || n.type !== "callUpdate" || n.call !== S.line) return;
      if (n.call.state === "active") lineRetry = 2000;
      if (n.call.state === "destroy") {  // the line dropped (or the daemon refused it): call in again, slower each time
        S.line = null;
        setTimeout(() => { if (current()) S.line = callIn(rtc); }, lineRetry);
        lineRetry = Math.min(lineRetry * 2, 30000);
      }
    });
    rtc.on("telnyx.error", (e) => { if (current()) toast(`Softphone: ${e.error?.message || "error"}`); });
    rtc.on("telnyx.socket.close", () => {
      if (!current()) return;
      S.lineWanted = false;
      setTimeout(() => { if (S.state !== "offline") connectLine(); }, lineRetry);
      lineRetry = Math.min(lineRetry * 2, 30000);
    });
    await rtc.connect();
  } catch (error) {
    if (generation !== lineGeneration) return;
    S.lineWanted = false;
    toast(`Softphone: ${error.message}`);
    setTimeout(() => { if (S.state !== "offline") connectLine(); }, 5000);
  }
}

function disconnectLine() {
  lineGeneration++;
  S.lineWanted = false;
  S.line?.hangup();
  S.rtc?.disconnect();
  S.rtc = S.line = null;
  S.lineUp = false;
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    if (window.TelnyxWebRTC) return resolve();
    const script = el("script", { src });
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load the WebRTC SDK from ${src}`));
    document.head.append(script);
  });
}

function setMuted(on) {
  if (S.line) on ? S.line.muteAudio() : S.line.unmuteAudio();
  $("mute").setAttribute("aria-pressed", String(on));
  $("mute").firstChild.textContent = on ? "Unmute" : "Mute";
}

function setHeld(on) {
  if (S.line) on ? S.line.hold() : S.line.unhold();
  $("hold").setAttribute("aria-pressed", String(on));
  $("hold").firstChild.textContent = on ? "Resume" : "Hold";
}

// -- the outcome form --------------------------------------------------------------------------------------

function showOutcome(attemptId, form, dispositions, who) {
  S.chosen = null;
  $("dispo-for").textContent = `Call #${attemptId} · ${who}`;
  $("form-fields").replaceChildren(...(form?.fields || []).map(fieldInput));
  let digit = 1;
  $("dispositions").replaceChildren(...dispositions.map((d) => {
    const key = d.hotkey || (digit <= 9 ? String(digit++) : null);
    return el("button", { type: "button", "aria-pressed": "false", dataset: { code: d.code, key: key || "" },
      onclick: () => choose(d.code) }, d.label, key ? el("kbd", {}, key) : null);
  }));
  $("dispo").dataset.attempt = attemptId;
  $("dispo").hidden = false;
  $("dispo-empty").hidden = true;
  $("callback").hidden = true;
  $("callback-at").value = "";
  $("callback-personal").checked = true;
  $("notes").value = "";
  $("dispo-error").textContent = "";
  const held = pending();
  if (held && held.attempt_id === attemptId) restoreHeld(held);
}

function restoreHeld(held) {  // a reload while saving: show what is being saved
  choose(held.code);
  $("notes").value = held.notes || "";
  for (const [key, value] of Object.entries(held.answers || {})) {
    const input = $(`f-${key}`);
    if (!input) continue;
    if (input.type === "checkbox") input.checked = Boolean(value);
    else if (input.multiple) for (const o of input.options) o.selected = [].concat(value).includes(o.value);
    else input.value = value;
  }
  if (held.callback) {
    const due = new Date(held.callback.due_at);
    $("callback-at").value = new Date(due.getTime() - due.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    $("callback-personal").checked = held.callback.personal;
  }
}

function fieldInput(f) {
  const id = `f-${f.key}`;
  const common = { id, name: f.key, "aria-describedby": `${id}-error`, dataset: { type: f.type } };
  let input;
  if (f.type === "textarea") input = el("textarea", { ...common, rows: 3, maxlength: f.max_length || f.max });
  else if (f.type === "select" || f.type === "multiselect") {
    input = el("select", { ...common, multiple: f.type === "multiselect" },
      f.type === "select" ? el("option", { value: "" }, "—") : null,
      f.options.map((o) => el("option", { value: o.value }, o.label)));
  } else if (f.type === "boolean") {
    input = el("input", { ...common, type: "checkbox" });
  } else {
    const type = { integer: "number", number: "number", date: "date", email: "email", phone: "tel", url: "url" }[f.type] || "text";
    input = el("input", { ...common, type, min: f.min, max: f.max, step: f.type === "integer" ? 1 : f.type === "number" ? "any" : null,
      maxlength: f.type === "text" ? f.max_length || f.max : null });
  }
  return el("div", {},
    el("label", { for: id }, f.label, f.required ? el("span", { class: "req", title: "required for a positive outcome" }, " *") : null),
    input,
    f.help ? el("div", { class: "muted" }, f.help) : null,
    el("div", { class: "field-error", id: `${id}-error` }));
}

function choose(code) {
  const d = S.pop?.dispositions.find((x) => x.code === code);
  if (!d) return;
  S.chosen = d;
  for (const button of $("dispositions").children) button.setAttribute("aria-pressed", String(button.dataset.code === code));
  $("callback").hidden = !d.callback;
  render();
}

function markField(key, message) {
  const input = $(`f-${key}`);
  if (!input) return;
  input.setAttribute("aria-invalid", "true");
  $(`f-${key}-error`).textContent = message;
}

function answers() {
  const out = {};
  let ok = true;
  for (const f of S.pop?.form?.fields || []) {
    const input = $(`f-${f.key}`);
    input.removeAttribute("aria-invalid");
    $(`f-${f.key}-error`).textContent = "";
    let value;
    if (f.type === "boolean") value = input.checked;
    else if (f.type === "multiselect") value = [...input.selectedOptions].map((o) => o.value);
    else value = input.value.trim();
    const empty = value === "" || (Array.isArray(value) && !value.length) || (f.type === "boolean" && !value && f.required);
    if (empty) {
      if (f.required && S.chosen?.positive) { markField(f.key, "required"); ok = false; }
      continue;
    }
    if (!input.checkValidity()) { markField(f.key, input.validationMessage); ok = false; continue; }
    out[f.key] = f.type === "integer" || f.type === "number" ? Number(value) : value;
  }
  return ok ? out : null;
}

function save(event) {
  event?.preventDefault();
  if (pending() || !S.pop || S.replaced) return;
  $("dispo-error").textContent = "";
  if (!S.chosen) { $("dispo-error").textContent = "Choose an outcome"; return; }
  if (S.call && S.call.attemptId === S.pop.attemptId && S.call.state !== "ended") {
    $("dispo-error").textContent = "Hang up first (H)"; return;
  }
  const values = answers();
  if (!values) { $("dispo-error").textContent = "Check the highlighted fields"; return; }
  const frame = { type: "disposition", id: nextId(), attempt_id: S.pop.attemptId, code: S.chosen.code, answers: values,
    notes: $("notes").value };
  if (S.chosen.callback) {
    const at = $("callback-at").value;
    if (!at) { $("dispo-error").textContent = "Choose when to call back"; return; }
    frame.callback = { due_at: new Date(at).toISOString(), personal: $("callback-personal").checked, notes: "" };
  }
  localStorage.setItem(pendingKey(), JSON.stringify(frame));  // kept until the daemon says it is saved
  socket.send(frame);
  render();
}

function clearOutcome() {
  S.pop = null;
  S.chosen = null;
  $("dispo").hidden = true;
  $("dispo-empty").hidden = false;
  $("pop").hidden = true;
  $("pop-empty").hidden = false;
}

function clearCall() {
  S.call = null;
}

// -- rendering ---------------------------------------------------------------------------------------------

function describe(contact) {
  const name = [contact?.first_name, contact?.last_name].filter(Boolean).join(" ");
  return name || contact?.phone || "unknown contact";
}

function renderFacts(dl, facts, keys) {
  const items = [];
  for (const key of [...keys, ...Object.keys(facts || {}).filter((k) => k.startsWith("custom."))]) {
    const value = facts?.[key];
    if (value === null || value === undefined || value === "") continue;
    items.push(el("dt", {}, key.replace("custom.", "").replaceAll("_", " ")), el("dd", {}, String(value)));
  }
  dl.replaceChildren(...(items.length ? items : [el("dd", { class: "muted" }, "—")]));
}

function render() {
  const chip = $("state");
  chip.dataset.state = S.state;
  chip.textContent = S.state.replace("_", " ") + (S.state === "paused" && S.reason ? ` · ${S.reason.replaceAll("_", " ")}` : "");
  const notes = [];
  if (S.pendingPause && S.state === "ready") {
    // held by the dialer: a call dialled for the team may still need this agent (Ready cancels the pause)
    notes.push(`Pause (${S.pendingPause}) as soon as the calls already dialled are answered or given up`);
  } else if (S.pendingPause) notes.push(`Pause (${S.pendingPause}) after this call`);
  if (S.owes) notes.push("Save the outcome before going ready");
  $("state-note").textContent = notes.join(" · ");
  $("line").textContent = S.lineUp ? "connected" : "not connected";
  const onCall = S.call && (S.call.state === "on call" || S.call.state === "connecting");
  const held = pending();
  const pauseHeld = S.state === "ready" && Boolean(S.pendingPause);
  $("ready").disabled = !((S.state === "paused" || pauseHeld) && S.lineUp && !S.owes && !S.pop);
  $("pause").disabled = !((S.state === "ready" && !pauseHeld) || onCall || S.state === "wrap_up");
  $("hangup").disabled = !(S.call && S.call.state === "on call");
  $("mute").disabled = $("hold").disabled = !(S.call && S.call.state === "on call");
  $("leave").disabled = Boolean(S.call) || S.owes || S.state === "wrap_up" || pauseHeld;
  $("preview").hidden = !S.preview;
  $("call-state").textContent = S.call ? `${S.call.state} · call #${S.call.attemptId}` : "No call";
  $("save").disabled = Boolean(held) || !S.pop;
  $("save").firstChild.textContent = held ? "Saving…" : "Save outcome";
  tick();
}

function tick() {
  $("state-time").textContent = duration(Date.now() - S.since);
  const c = S.call;
  $("timer").textContent = c?.startedAt ? duration((c.endedAt || Date.now()) - c.startedAt) : "--:--";
}
setInterval(tick, 250);

// -- actions and keys --------------------------------------------------------------------------------------

const actions = {
  ready: () => send({ type: "ready", id: nextId() }),
  pause: () => send({ type: "pause", id: nextId(), reason: $("pause-reason").value }),
  hangup: () => S.call && send({ type: "hangup", id: nextId(), attempt_id: S.call.attemptId }),
  mute: () => setMuted($("mute").getAttribute("aria-pressed") !== "true"),
  hold: () => setHeld($("hold").getAttribute("aria-pressed") !== "true"),
  accept: () => {
    if (!S.preview) return;
    send({ type: "preview_accept", id: nextId(), contact_id: S.preview.contact_id });
    S.preview = null;  // the screen pop follows when the contact answers
    render();
  },
  skip: () => {
    if (!S.preview) return;
    send({ type: "preview_skip", id: nextId(), contact_id: S.preview.contact_id });
    S.preview = null;
    if (!S.pop) { $("pop").hidden = true; $("pop-empty").hidden = false; }  // an outcome being filled stays
    render();
  },
  leave: () => send({ type: "leave", id: nextId() }),
  join: () => send({ type: "join", id: nextId(), campaign_id: Number($("campaign").value) }),
};
$("ready").addEventListener("click", actions.ready);
$("pause").addEventListener("click", actions.pause);
$("hangup").addEventListener("click", actions.hangup);
$("mute").addEventListener("click", actions.mute);
$("hold").addEventListener("click", actions.hold);
$("preview-accept").addEventListener("click", actions.accept);
$("preview-skip").addEventListener("click", actions.skip);
$("leave").addEventListener("click", actions.leave);
$("join-button").addEventListener("click", actions.join);
$("dispo").addEventListener("submit", save);

const KEYS = { r: "ready", p: "pause", h: "hangup", m: "mute", o: "hold", a: "accept", s: "skip" };
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest?.("input, textarea, select");
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("dispo").hidden) return save(event);
  if (event.key === "Escape" && typing) return event.target.blur();
  if (typing || event.ctrlKey || event.metaKey || event.altKey || $("console").hidden || S.replaced) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : "";
  if (!$("dispo").hidden) {  // while an outcome is due, its keys come first
    const button = key && [...$("dispositions").children].find((b) => b.dataset.key.toLowerCase() === key);
    if (button) { event.preventDefault(); return choose(button.dataset.code); }
  }
  const action = KEYS[key];
  if (action) {
    const button = { ready: "ready", pause: "pause", hangup: "hangup", mute: "mute", hold: "hold", accept: "preview-accept", skip: "preview-skip" }[action];
    if ($(button).disabled || $(button).closest("[hidden]")) return;
    event.preventDefault();
    actions[action]();
  }
});

start();
