// The supervisor dashboard: agents by state with time in state, each campaign's figures and charts, pushed by the
// daemon over /ws/supervisor (frames: snapshot, agents, campaigns). Times come as epoch ms on the daemon's clock;
// the offset to this browser's clock is taken from each frame's "now".

import { api, applyTheme, duration, el, signIn, signOut, Socket, toast, toggleTheme } from "./common.js";
import { lineChart } from "./charts.js";

const $ = (id) => document.getElementById(id);
const agents = new Map();     // user id -> {data, row}
const campaigns = new Map();  // campaign id -> {data, card, series}
let offset = 0;               // daemon clock - browser clock
let socket = null;
let seq = 0;

applyTheme();
$("theme").addEventListener("click", () => { toggleTheme(); for (const c of campaigns.values()) drawCharts(c); });
$("signout").addEventListener("click", signOut);
$("agent-filter").addEventListener("change", filterAgents);

async function start() {
  await signIn($("signin"), $("signin-error"));
  $("signout").hidden = false;
  $("dashboard").hidden = false;
  api("/api/auth/me").then((me) => { $("who").textContent = me.display_name || me.email; }).catch(() => {});
  socket = new Socket("/ws/supervisor", {
    onFrame: handle,
    onStatus: (up) => { $("conn").dataset.up = up; $("conn").textContent = up ? "live" : "reconnecting…"; },
  });
}

function handle(frame) {
  if (frame.now) offset = frame.now - Date.now();
  if (frame.type === "snapshot") {
    for (const { row } of agents.values()) { onScreen.unobserve(row); row.remove(); }
    visible.clear();
    agents.clear();
    for (const c of campaigns.values()) c.card.remove();
    campaigns.clear();
    for (const c of frame.campaigns) updateCampaign(c, frame.series[String(c.id)] || []);
    for (const a of [...frame.agents].sort((x, y) => x.name.localeCompare(y.name))) updateAgent(a);
  } else if (frame.type === "agents") {
    for (const a of frame.agents) updateAgent(a);
    for (const id of frame.gone) {
      const entry = agents.get(id);
      if (!entry) continue;
      onScreen.unobserve(entry.row);
      visible.delete(entry);
      entry.row.remove();
      agents.delete(id);
    }
  } else if (frame.type === "campaigns") {
    const seen = new Set();
    for (const c of frame.campaigns) { updateCampaign(c, c.points || []); seen.add(c.id); }
    for (const [id, c] of campaigns) if (!seen.has(id)) { c.card.remove(); campaigns.delete(id); }
  } else if (frame.type === "ack") {
    toast(`Done: agent ${frame.user_id} is ${frame.state.replace("_", " ")}`);
  } else if (frame.type === "error") {
    toast(frame.message);
  }
  if (["snapshot", "agents", "campaigns"].includes(frame.type)) countAll();
  $("agent-count").textContent = `(${agents.size})`;
  $("no-campaigns").hidden = campaigns.size > 0;
}

// -- agents ------------------------------------------------------------------------------------------------

function updateAgent(a) {
  let entry = agents.get(a.user_id);
  if (!entry) {
    const cells = Array.from({ length: 8 }, () => el("td"));
    cells[3].className = cells[5].className = "num";
    const pause = el("button", { type: "button", "aria-label": `Pause ${a.name}`, onclick: () => command("force_pause", a.user_id) }, "Pause");
    const logout = el("button", { type: "button", class: "danger", "aria-label": `Log out ${a.name}`,
      onclick: (e) => confirmLogout(e.currentTarget, a.user_id) }, "Log out");
    cells[7].append(pause, " ", logout);
    const row = el("tr", { dataset: { user: a.user_id } }, cells);
    entry = { data: a, row, cells, pause, logout };
    agents.set(a.user_id, entry);
    insertSorted(row, a.name);
    onScreen.observe(row);
  }
  entry.data = a;
  const { cells } = entry;
  cells[0].textContent = a.name;
  cells[1].textContent = campaigns.get(a.campaign_id)?.data.name || `#${a.campaign_id}`;
  const chip = el("span", { class: "chip", dataset: { state: a.state } },
    a.state.replace("_", " ") + (a.state === "paused" && a.reason ? ` · ${a.reason.replaceAll("_", " ")}` : ""));
  cells[2].replaceChildren(chip, a.pending_pause ? el("span", { class: "muted" }, " → pause") : "", a.owes ? el("span", { class: "muted" }, " · owes outcome") : "");
  cells[4].textContent = a.call ? [a.call.contact, a.call.account].filter(Boolean).join(" · ") || `call #${a.call.attempt_id}` : "";
  cells[6].textContent = `${a.softphone ? "line up" : "no line"}${a.online ? "" : " · console away"}`;
  // a pause the dialer holds (ready, pending) may still be forced: the supervisor's pause is taken at once
  entry.pause.disabled = a.state === "paused" || (Boolean(a.pending_pause) && a.state !== "ready");
  entry.row.dataset.state = a.state;
  filterRow(entry);
  tickAgent(entry);
}

function insertSorted(row, name) {
  const body = $("agents").tBodies[0];
  const last = body.rows[body.rows.length - 1];
  if (!last || agents.get(Number(last.dataset.user))?.data.name.localeCompare(name) <= 0) return body.append(row);
  const before = [...body.rows].find((r) => agents.get(Number(r.dataset.user))?.data.name.localeCompare(name) > 0);
  body.insertBefore(row, before || null);
}

function tickAgent(entry) {
  const now = Date.now() + offset;
  entry.cells[3].textContent = duration(now - entry.data.since);
  entry.cells[5].textContent = entry.data.call?.since ? duration(now - entry.data.call.since) : "";
}

function filterAgents() { for (const entry of agents.values()) filterRow(entry); }
function filterRow(entry) {
  const wanted = $("agent-filter").value;
  const state = entry.data.state === "reserved" ? "on_call" : entry.data.state;
  entry.row.hidden = Boolean(wanted) && state !== wanted;
}

function confirmLogout(button, userId) {
  const label = button.getAttribute("aria-label").replace(/^Confirm: /, "");
  if (button.dataset.armed) {
    delete button.dataset.armed;
    button.textContent = "Log out";
    button.setAttribute("aria-label", label);
    return command("force_logout", userId);
  }
  button.dataset.armed = "1";
  button.textContent = "Confirm log out";
  button.setAttribute("aria-label", `Confirm: ${label}`);
  setTimeout(() => { delete button.dataset.armed; button.textContent = "Log out"; button.setAttribute("aria-label", label); }, 4000);
}

function command(type, userId) {
  if (!socket.send({ type, id: `s${seq++}`, user_id: userId })) toast("Not connected");
}

// -- campaigns ---------------------------------------------------------------------------------------------

const pct = (v) => `${(v * 100).toFixed(2)}%`;

function updateCampaign(c, points) {
  let entry = campaigns.get(c.id);
  if (!entry) {
    const { card, figures, charts } = buildCard(c);
    entry = { data: c, series: [], card, figures, charts, drawn: false };
    campaigns.set(c.id, entry);
    $("campaigns").append(entry.card);
  }
  entry.data = c;
  const last = entry.series.length ? entry.series[entry.series.length - 1][0] : -Infinity;
  let added = false;
  for (const p of points) if (p[0] > last) { entry.series.push(p); added = true; }
  const f = entry.figures;
  const ab = c.abandon;
  f.mode.textContent = `${c.mode}${c.mode === "predictive" ? ` (${c.pacer})` : ""} · ${c.status}`;
  set(f.today, pct(ab.today), ab.today >= ab.ceiling, `${ab.abandoned_today} of ${ab.answers_today} answers, machines included`);
  set(f.us, pct(ab.us_30_day), ab.us_30_day >= ab.ceiling);
  set(f.uk, pct(ab.uk_day), ab.uk_day >= ab.ceiling);
  set(f.level, c.dial_level.toFixed(2));
  set(f.calls, `${c.calls.ringing} / ${c.calls.waiting} / ${c.calls.talking}`, c.calls.waiting > 0,
    c.calls.oldest_wait_s != null ? `oldest waiting ${c.calls.oldest_wait_s} s` : "");
  set(f.connects, c.connects_per_hour.toFixed(0));
  set(f.talk, c.talk_min_per_agent_hour.toFixed(1));
  set(f.aht, c.average_handle_s != null ? duration(c.average_handle_s * 1000) : "—");
  set(f.occupancy, c.occupancy != null ? pct(c.occupancy) : "—");
  set(f.hopper, String(c.hopper), c.hopper === 0 && c.status === "running");
  set(f.caps, String(c.accounts_at_cap));
  if (added || !entry.drawn) drawCharts(entry);
}

// Agents by state from the agent rows (pushed within 50 ms), so the card never disagrees with the table.
function countAll() {
  const counts = new Map();
  for (const { data } of agents.values()) {
    const byState = counts.get(data.campaign_id) || {};
    byState[data.state] = (byState[data.state] || 0) + 1;
    counts.set(data.campaign_id, byState);
  }
  for (const entry of campaigns.values()) {
    const byState = counts.get(entry.data.id) || {};
    entry.figures.agents.textContent = ["ready", "reserved", "on_call", "wrap_up", "paused"]
      .map((s) => `${byState[s] || 0} ${s.replace("_", " ")}`).join(" · ");
  }
}

function set(node, text, over = false, title = "") {
  node.textContent = text;
  node.classList.toggle("over", over);
  if (title) node.title = title;
}

function buildCard(c) {
  const figures = {};
  const figure = (key, label) => {
    figures[key] = el("div", { class: "v", dataset: { figure: key } }, "—");
    return el("div", { class: "figure" }, figures[key], el("div", { class: "k" }, label));
  };
  figures.mode = el("span", { class: "muted" });
  figures.agents = el("div", { class: "muted" });
  const charts = {};
  const svg = (name) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    node.setAttribute("class", "chart");
    charts[name] = node;
    return node;
  };
  const card = el("section", { class: "panel", "aria-label": `Campaign ${c.name}`, dataset: { campaign: c.id } },
    el("h3", {}, c.name, " ", figures.mode),
    figures.agents,
    el("div", { class: "figures gap-top" },
      figure("today", "abandoned today"), figure("us", "US 30-day"), figure("uk", "UK today"), figure("level", "dial level"),
      figure("calls", "ringing / waiting / talking"), figure("connects", "connects / hour"), figure("talk", "talk min / agent-h"),
      figure("aht", "avg handle"), figure("occupancy", "occupancy"), figure("hopper", "hopper"), figure("caps", "accounts at cap")),
    svg("abandon"), svg("level"), svg("occupancy"));
  return { card, figures, charts };
}

function drawCharts(entry) {
  const charts = entry.charts;
  const s = entry.series;
  lineChart(charts.abandon, s.map((p) => [p[0], p[1] * 100]), { label: "abandon rate today %", limit: entry.data.abandon.ceiling * 100, format: (v) => `${v.toFixed(1)}%`, floor: 1 });
  lineChart(charts.level, s.map((p) => [p[0], p[2]]), { label: "dial level", format: (v) => v.toFixed(1), floor: 1 });
  lineChart(charts.occupancy, s.map((p) => [p[0], p[3] * 100]), { label: "occupancy %", format: (v) => `${v.toFixed(0)}%`, teal: true, floor: 100 });
  entry.drawn = true;
}

// Only the rows on screen tick (a thousand agents would otherwise cost a thousand text updates a second);
// a row that scrolls into view is brought up to date at once.
const visible = new Set();
const onScreen = new IntersectionObserver((changes) => {
  for (const change of changes) {
    const entry = agents.get(Number(change.target.dataset.user));
    if (!entry) continue;
    if (change.isIntersecting) { visible.add(entry); tickAgent(entry); } else visible.delete(entry);
  }
});
setInterval(() => { for (const entry of visible) tickAgent(entry); }, 1000);

start();
