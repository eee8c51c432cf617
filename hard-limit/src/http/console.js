"use strict";
const TOKEN_KEY = "eyeson-hard-limit-admin-token";
const $ = (s) => document.querySelector(s);
const statusEl = $("#status");
let skew = 0; // server clock minus this browser's, from the Date header
let meetings = [];

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
function badge(state) {
  const b = document.createElement("span");
  b.className = `badge s-${state}`;
  b.textContent = STATES[state] || state;
  return b;
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
    cell(tr, "Deadline", when(m.deadline), "num deadline");
    const l = cell(tr, "Time left", "", "num left");
    l.dataset.deadline = m.deadline;
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
    cell(tr, "Outcome", badge(m.state));
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
    td.textContent = left(ms);
    td.classList.toggle("due", ms <= 0);
    td.classList.toggle("soon", ms > 0 && ms < 5 * 60 * 1000);
  }
}

async function refresh() {
  try {
    meetings = await api("GET", "/meetings");
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

const EVENTS = { started: "started", tracked: "tracked by the service", extend: "deadline moved", end: "ended by an operator", stopping: "shutdown under way" };
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
    item(`Meeting started ${when(m.started_at)}: ${STATES[m.state] || m.state}`, "meeting");
    for (const e of m.events) {
      let text = `${when(e.at)} ${EVENTS[e.event] || STATES[e.event] || e.event}`;
      if (e.new_deadline) text += ` from ${when(e.old_deadline)} to ${when(e.new_deadline)}`;
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
    l = await api("GET", "/limits");
  } catch (e) {
    say(`Could not load limits: ${e.message}`, true);
    return;
  }
  $("#limits-note").textContent = `Default ${l.default}, plus ${l.grace} grace. A change applies to meetings that start afterwards.`;
  const body = $("#limits tbody");
  body.replaceChildren();
  const rows = [
    ...Object.entries(l.rooms).map(([key, limit]) => ["rooms", "Room", key, limit]),
    ...Object.entries(l.prefixes).map(([key, limit]) => ["prefixes", "Prefix", key, limit]),
  ];
  for (const [kind, kindLabel, key, limit] of rows) {
    const tr = document.createElement("tr");
    cell(tr, "Applies to", kindLabel);
    cell(tr, "Room or prefix", key, "room");
    const input = document.createElement("input");
    input.className = "limit";
    input.value = limit;
    input.setAttribute("aria-label", `Limit for ${kindLabel.toLowerCase()} ${key}`);
    cell(tr, "Limit", input);
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(
      button("Save", `the limit for ${kindLabel.toLowerCase()} ${key}`, () => setLimit(kind, key, input.value.trim())),
      button("Remove", `the limit for ${kindLabel.toLowerCase()} ${key}`, () => removeLimit(kind, key), "danger"),
    );
    cell(tr, "Actions", actions, "actions-cell");
    body.append(tr);
  }
  $("#limits").hidden = rows.length === 0;
}

const limitPath = (kind, key) => `/limits/${kind}/${encodeURIComponent(key)}`;
async function setLimit(kind, key, limit) {
  let ok = false;
  try {
    await api("PUT", limitPath(kind, key), { limit });
    say(`Limit for ${key} set to ${limit}.`);
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
$("#add-limit").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = ev.target;
  setLimit(f.kind.value, f.key.value.trim(), f.limit.value.trim()).then((ok) => ok && f.reset());
});

refresh().then(loadLimits);
setInterval(tick, 1000);
setInterval(() => { if (!document.querySelector("dialog[open]")) refresh(); }, 5000);
