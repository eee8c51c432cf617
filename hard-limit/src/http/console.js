"use strict";
const TOKEN_KEY = "eyeson-hard-limit-admin-token";
const $ = (s) => document.querySelector(s);
const statusEl = $("#status");
let skew = 0; // server clock minus this browser's, from the Date header
let meetings = [];
let limits = null; // GET /limits, for each room's alone rule

function say(text, error = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", error);
  statusEl.classList.remove("stale");
}

let tokenAsk = null;
function askToken(why) {
  if (tokenAsk) return tokenAsk;
  const dialog = $("#token-dialog");
  $("#token-why").textContent = why || "This service asks for its admin token. It is kept for this tab only.";
  tokenAsk = new Promise((resolve) => {
    dialog.addEventListener("close", function done() {
      dialog.removeEventListener("close", done);
      const value = $("#token-form").token.value.trim();
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      $("#token-form").token.value = "";
      tokenAsk = null;
      resolve();
    });
  });
  dialog.showModal();
  return tokenAsk;
}

async function api(method, path, body) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = { accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.authorization = `Bearer ${token}`;
    // The listener refuses changes that are not JSON (a cross-site form cannot send it).
    if (method !== "GET") headers["content-type"] = "application/json";
    const r = await fetch(path, { method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
    const date = Date.parse(r.headers.get("date") || "");
    if (!Number.isNaN(date)) {
      const d = date - Date.now();
      skew = Math.abs(d) > 2000 ? d : 0; // the header has whole seconds only
    }
    if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      await askToken(token ? "That token was refused. Enter the admin token." : "");
      continue;
    }
    const data = await r.json().catch(() => null);
    if (!r.ok) throw new Error((data && data.error) || `${method} ${path} answered ${r.status}`);
    return data;
  }
  throw new Error("the admin token was refused");
}

const now = () => Date.now() + skew;
const when = (iso) => new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
// Alone periods are minutes long: the time of day says enough.
const clock = (iso) => new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
function left(ms) {
  if (ms <= 0) return "due";
  const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
}
const STATES = { running: "running", stopping: "ending", shut_down: "shut down", ended: "ended", skipped: "skipped", failed: "failed" };

function cell(row, label, content, cls) {
  const td = document.createElement("td");
  td.dataset.label = label;
  if (cls) td.className = cls;
  if (content instanceof Node) td.append(content); else td.textContent = content;
  row.append(td);
  return td;
}
function badge(state, text) {
  const b = document.createElement("span");
  b.className = `badge s-${state}`;
  b.textContent = text || STATES[state] || state;
  return b;
}
const outcome = (m) => badge(m.state, m.ended_alone ? "ended alone" : "");

// The alone rule for a room as the service looks it up: the room's own
// setting, else the longest prefix that sets one, else the default.
function aloneRule(room) {
  const a = limits && limits.alone_after;
  if (!a) return { value: "off" };
  const prefix = Object.keys(a.prefixes).filter((p) => room.startsWith(p)).sort((x, y) => y.length - x.length)[0];
  const inherited = prefix === undefined ? a.default : a.prefixes[prefix];
  return Object.hasOwn(a.rooms, room) ? { value: a.rooms[room], own: true, inherited } : { value: inherited, inherited };
}
function button(text, label, onClick, cls = "") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.className = cls;
  // The visible text starts the accessible name (WCAG 2.5.3), the rest
  // says which room.
  b.setAttribute("aria-label", `${text} – ${label}`);
  b.addEventListener("click", onClick);
  return b;
}

function renderMeetings() {
  const focused = document.activeElement && document.activeElement.dataset.fid;
  const open = meetings.filter((m) => m.state === "running" || m.state === "stopping");
  const done = meetings.filter((m) => !(m.state === "running" || m.state === "stopping"));
  const body = $("#open tbody");
  body.replaceChildren();
  for (const m of open) {
    const tr = document.createElement("tr");
    tr.dataset.room = m.room_id;
    cell(tr, "Room", m.room_id, "room");
    cell(tr, "Started", when(m.started_at), "num");
    // Whichever end comes first is the one counted down; the other is muted.
    const aloneFirst = m.alone_deadline && Date.parse(m.alone_deadline) < Date.parse(m.deadline);
    cell(tr, "Deadline", when(m.deadline), `num deadline${aloneFirst ? " later" : ""}`);
    cell(tr, "Participants", m.participants ?? "–", "num");
    const rule = aloneRule(m.room_id);
    const alone = document.createElement("span");
    alone.textContent = rule.value === "off" ? "rule off" : m.alone_since ? `since ${clock(m.alone_since)}` : "–";
    // A line of its own: "ends 12:31:05 (first)".
    if (m.alone_deadline) alone.append(document.createElement("br"), `ends ${clock(m.alone_deadline)} ${aloneFirst ? "(first)" : "(after the deadline)"}`);
    cell(tr, "Alone", alone, `alone${aloneFirst ? " first" : ""}`);
    const l = cell(tr, "Time left", "", "num left");
    l.dataset.deadline = aloneFirst ? m.alone_deadline : m.deadline;
    if (aloneFirst) l.dataset.why = "alone";
    cell(tr, "State", badge(m.state));
    cell(tr, "Limit", m.limit + (m.moved ? " (moved)" : ""), "num");
    const actions = document.createElement("div");
    actions.className = "actions";
    const running = m.state === "running";
    const add = (text, label, fn, cls, fid) => {
      const b = button(text, label, fn, cls);
      b.disabled = !running;
      b.dataset.fid = `${fid}:${m.room_id}`;
      actions.append(b);
    };
    add("+15 min", `extend the meeting in ${m.room_id} by 15 minutes`, () => extend(m, { by: "15m" }), "", "p15");
    add("+1 h", `extend the meeting in ${m.room_id} by 1 hour`, () => extend(m, { by: "1h" }), "", "p60");
    add("Custom…", `extend the meeting in ${m.room_id} by a custom amount`, () => custom(m), "", "custom");
    add("End now", `end the meeting in ${m.room_id} now`, () => endNow(m), "danger", "end");
    actions.append(button("History", `what happened in ${m.room_id}`, () => history(m.room_id)));
    // The room's alone rule (a runtime limit, like the limits below).
    if (rule.value !== "off") {
      const b = button("Alone rule off", `turn the alone rule off for room ${m.room_id}`, () => setAlone(m.room_id, null));
      b.dataset.fid = `alone:${m.room_id}`;
      actions.append(b);
    } else if (rule.own && rule.inherited !== "off") {
      const b = button("Alone rule on", `turn the alone rule back on for room ${m.room_id} (${rule.inherited})`, () => setAlone(m.room_id, "inherit"));
      b.dataset.fid = `alone:${m.room_id}`;
      actions.append(b);
    }
    cell(tr, "Actions", actions, "actions-cell");
    body.append(tr);
  }
  $("#open-empty").hidden = open.length > 0;
  $("#open").hidden = open.length === 0;
  $("#open-count").textContent = `(${open.length})`;
  const dbody = $("#done tbody");
  dbody.replaceChildren();
  for (const m of done) {
    const tr = document.createElement("tr");
    cell(tr, "Room", m.room_id, "room");
    cell(tr, "Started", when(m.started_at), "num");
    cell(tr, "Deadline", when(m.deadline), "num");
    cell(tr, "Outcome", outcome(m));
    cell(tr, "History", button("History", `what happened in ${m.room_id}`, () => history(m.room_id)), "actions-cell");
    dbody.append(tr);
  }
  $("#done-empty").hidden = done.length > 0;
  $("#done").hidden = done.length === 0;
  $("#done-count").textContent = `(${done.length})`;
  if (focused) document.querySelector(`[data-fid="${CSS.escape(focused)}"]`)?.focus();
  tick();
}

function tick() {
  for (const td of document.querySelectorAll("td[data-deadline]")) {
    const ms = Date.parse(td.dataset.deadline) - now();
    td.textContent = left(ms) + (td.dataset.why ? ` (${td.dataset.why})` : "");
    td.classList.toggle("due", ms <= 0);
    td.classList.toggle("soon", ms > 0 && ms < 5 * 60 * 1000);
  }
}

async function refresh() {
  try {
    [meetings, limits] = await Promise.all([api("GET", "/meetings"), api("GET", "/limits")]);
    renderMeetings();
    $("#updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    if (statusEl.textContent === "Loading…" || statusEl.classList.contains("stale")) say("");
  } catch (e) {
    say(`Could not load meetings: ${e.message}`, true);
    statusEl.classList.add("stale");
  }
}

async function act(what, fn) {
  try {
    await fn();
    say(what);
  } catch (e) {
    say(e.message, true);
  }
  await refresh();
}

const path = (room, action) => `/meetings/${encodeURIComponent(room)}/${action}`;
function extend(m, change) {
  const how = change.by ? `by ${change.by}` : `to ${when(change.until)}`;
  return act(`Extended the meeting in ${m.room_id} ${how}.`, () =>
    api("POST", path(m.room_id, "extend"), { ...change, started_at: m.started_at }));
}

function custom(m) {
  const dialog = $("#custom-dialog");
  const form = $("#custom-form");
  form.reset();
  $("#custom-error").textContent = "";
  $("#custom-h").textContent = `Extend the meeting in ${m.room_id}`;
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const by = form.by.value.trim();
    const until = form.until.value;
    if (!by === !until) {
      $("#custom-error").textContent = "Give either a duration or a new deadline.";
      return;
    }
    const change = by ? { by } : { until: new Date(until).toISOString() };
    try {
      await api("POST", path(m.room_id, "extend"), { ...change, started_at: m.started_at });
    } catch (e) {
      $("#custom-error").textContent = e.message;
      return;
    }
    dialog.close();
    say(`Extended the meeting in ${m.room_id} ${by ? `by ${by}` : `to ${when(change.until)}`}.`);
    refresh();
  };
  $("#custom-cancel").onclick = () => dialog.close();
  dialog.showModal();
  form.by.focus();
}

function endNow(m) {
  const dialog = $("#end-dialog");
  $("#end-what").textContent = `The meeting in ${m.room_id} (started ${when(m.started_at)}) ends for everyone in it.`;
  $("#end-form").onsubmit = (ev) => {
    ev.preventDefault();
    dialog.close();
    act(`Ending the meeting in ${m.room_id}.`, () => api("POST", path(m.room_id, "end"), { started_at: m.started_at }));
  };
  $("#end-cancel").onclick = () => dialog.close();
  dialog.showModal();
  $("#end-cancel").focus();
}

const EVENTS = {
  started: "started", tracked: "tracked by the service", extend: "deadline moved", end: "ended by an operator", stopping: "shutdown under way",
  alone: "alone: the alone clock started", company: "company again: the alone clock was reset", warned: "alone warning sent in the chat",
  alone_cancelled: "alone end cancelled: someone joined", ended_alone: "ended by the alone rule",
};
async function history(room) {
  let h;
  try {
    h = await api("GET", path(room, "history"));
  } catch (e) {
    say(e.message, true);
    return;
  }
  $("#history-h").textContent = `History of ${room}`;
  const list = $("#history-list");
  list.replaceChildren();
  const item = (text, cls) => {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    list.append(li);
  };
  for (const m of h.meetings) {
    const alone = m.events.some((e) => e.event === "ended_alone");
    item(`Meeting started ${when(m.started_at)}: ${alone ? "ended alone" : STATES[m.state] || m.state}`, "meeting");
    for (const e of m.events) {
      let text = `${when(e.at)} ${EVENTS[e.event] || STATES[e.event] || e.event}`;
      if (e.new_deadline) text += ` from ${when(e.old_deadline)} to ${when(e.new_deadline)}`;
      if (e.participants != null) text += ` (${e.participants} counted)`;
      if (e.caller) text += ` (${e.detail}; by ${e.caller})`;
      item(text);
    }
  }
  for (const a of h.actions.filter((a) => !a.started_at)) item(`${when(a.at)} ${a.detail} (by ${a.caller})`);
  if (!list.children.length) item("Nothing recorded for this room.");
  $("#history-dialog").showModal();
}

async function loadLimits() {
  let l;
  try {
    l = limits = await api("GET", "/limits");
  } catch (e) {
    say(`Could not load limits: ${e.message}`, true);
    return;
  }
  renderMeetings();
  const a = l.alone_after;
  $("#limits-note").textContent = `Default ${l.default}, plus ${l.grace} grace; alone rule ${a.default === "off" ? "off" : `after ${a.default}`} by default. ` +
    "A limit applies to meetings that start afterwards, an alone rule from the next participants check. Empty: the default.";
  const body = $("#limits tbody");
  body.replaceChildren();
  const rows = ["rooms", "prefixes"].flatMap((kind) =>
    [...new Set([...Object.keys(l[kind]), ...Object.keys(a[kind])])].sort()
      .map((key) => [kind, kind === "rooms" ? "Room" : "Prefix", key, l[kind][key] || "", a[kind][key] || ""]));
  for (const [kind, kindLabel, key, limit, aloneAfter] of rows) {
    const tr = document.createElement("tr");
    cell(tr, "Applies to", kindLabel);
    cell(tr, "Room or prefix", key, "room");
    const input = document.createElement("input");
    input.className = "limit";
    input.value = limit;
    input.placeholder = "default";
    input.setAttribute("aria-label", `Limit for ${kindLabel.toLowerCase()} ${key}`);
    cell(tr, "Limit", input);
    const aloneInput = document.createElement("input");
    aloneInput.className = "limit";
    aloneInput.value = aloneAfter;
    aloneInput.placeholder = "default";
    aloneInput.setAttribute("aria-label", `Alone rule for ${kindLabel.toLowerCase()} ${key}`);
    cell(tr, "Alone rule", aloneInput);
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(
      button("Save", `the limit for ${kindLabel.toLowerCase()} ${key}`, () =>
        setLimit(kind, key, { limit: input.value.trim() || null, alone_after: aloneInput.value.trim() || "inherit" })),
      button("Remove", `the rule for ${kindLabel.toLowerCase()} ${key}`, () => removeLimit(kind, key), "danger"),
    );
    cell(tr, "Actions", actions, "actions-cell");
    body.append(tr);
  }
  $("#limits").hidden = rows.length === 0;
}

const limitPath = (kind, key) => `/limits/${kind}/${encodeURIComponent(key)}`;
// `change`: {limit, alone_after}, merged into the rule (a field left out stays).
async function setLimit(kind, key, change) {
  let ok = false;
  try {
    const r = await api("PUT", limitPath(kind, key), change);
    say(`Rule for ${key}: limit ${r.limit || "default"}, alone rule ${r.alone_after || "default"}.`);
    ok = true;
  } catch (e) {
    say(e.message, true);
  }
  await loadLimits();
  return ok;
}
async function removeLimit(kind, key) {
  try {
    await api("DELETE", limitPath(kind, key));
    say(`Limit for ${key} removed.`);
  } catch (e) {
    say(e.message, true);
  }
  loadLimits();
}
const setAlone = (room, setting) =>
  act(setting === null ? `Alone rule off for room ${room}; its alone clock stops at the next check.` : `Alone rule for room ${room} back to the default.`,
    () => api("PUT", limitPath("rooms", room), { alone_after: setting })).then(loadLimits);
$("#add-limit").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = ev.target;
  const change = {};
  if (f.limit.value.trim()) change.limit = f.limit.value.trim();
  if (f.alone.value.trim()) change.alone_after = f.alone.value.trim();
  if (!Object.keys(change).length) return say("Give a limit, an alone rule (like 30m or off), or both.", true);
  setLimit(f.kind.value, f.key.value.trim(), change).then((ok) => ok && f.reset());
});

refresh().then(loadLimits);
setInterval(tick, 1000);
setInterval(() => { if (!document.querySelector("dialog[open]")) refresh(); }, 5000);
