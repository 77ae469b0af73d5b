// The reviewer's console. Every text is inserted with textContent (never innerHTML), so an item holding
// <script> or onerror= is shown as text; the page's Content-Security-Policy allows no inline script besides.
// The API key lives in sessionStorage only: it is gone when the browser session ends.
"use strict";

const KEY_STORE = "lodbrok-api-key";
const VIEWS = ["try", "queue", "held", "model"];
const state = { view: "try", labels: [], queue: [], held: [] };

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function say(message, kind) {
  const status = $("status");
  status.textContent = message;
  status.className = kind || "";
}

// --- the API, and its errors in plain words --------------------------------------------------------------------

class ApiError extends Error {}

function plainError(status, body) {
  const error = body && body.error;
  if (status === 0) return "The API could not be reached. Check the network and try again.";
  if (status === 403 && error && error.code === "forbidden") {
    const needed = (error.details && error.details[0]) || {};
    return `Your key may not do this: it needs the role "${needed.required_role}", and your key has ` +
      `"${needed.role}". Ask an admin for a key with that role.`;
  }
  // API Gateway's own 403 (no or unknown key) has no `error`; the function's other 403s explain themselves below.
  if (status === 403 && !error) {
    return "The API refused the key: it is missing, mistyped or revoked. Enter a valid key above.";
  }
  if (status === 429) return "Too many requests for this key right now. Wait a moment and try again.";
  if (error) {
    const details = (error.details || []).map((d) => d.message || d.field).filter(Boolean);
    return `${error.message}${details.length ? ": " + details.join("; ") : ""} (${error.code}, HTTP ${status}).`;
  }
  return `The API answered HTTP ${status} without an explanation.`;
}

async function api(method, path, body) {
  const key = sessionStorage.getItem(KEY_STORE);
  if (!key) throw new ApiError("Enter an API key above first.");
  const options = { method, headers: { "x-api-key": key } };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, window.location.href), options);
  } catch (failure) {
    throw new ApiError(plainError(0, null));
  }
  let parsed = null;
  try { parsed = await response.json(); } catch (failure) { parsed = null; }
  if (!response.ok) throw new ApiError(plainError(response.status, parsed));
  return parsed;
}

async function run(action) {
  try {
    await action();
  } catch (failure) {
    say(failure instanceof ApiError ? failure.message : `Something went wrong in the page: ${failure}`, "error");
  }
}

// --- texts with the explanation as highlights ------------------------------------------------------------------

const TOKEN = /(\p{L}[\p{L}\p{N}'_]*|\p{N}+|\s+|[^\s\p{L}\p{N}])/u;

function weightsOf(explanation, field) {
  const weights = new Map();
  if (!explanation) return weights;
  for (const [side, pieces] of [["towards", explanation.towards], ["away", explanation.away]]) {
    for (const piece of pieces || []) {
      if ((piece.field || null) === (field || null)) weights.set(piece.piece.toLowerCase(), [side, piece.weight]);
    }
  }
  return weights;
}

function highlighted(text, weights) {
  const fragment = document.createDocumentFragment();
  for (const part of String(text).split(TOKEN)) {
    if (!part) continue;
    const mark = weights.get(part.toLowerCase());
    if (!mark) { fragment.append(document.createTextNode(part)); continue; }
    const span = el("mark", part, mark[0]);
    span.title = `${mark[0] === "towards" ? "towards" : "away from"} the label, weight ${mark[1].toFixed(2)}`;
    fragment.append(span);
  }
  return fragment;
}

function showInput(container, input, explanation) {
  container.replaceChildren();
  if (typeof input === "string") {
    container.append(highlighted(input, weightsOf(explanation, null)));
    return;
  }
  for (const [name, value] of Object.entries(input)) {
    const line = el("div");
    line.append(el("span", `${name}: `, "field-name"));
    const whole = weightsOf(explanation, name);
    line.append(highlighted(value === null ? "" : String(value), whole));
    container.append(line);
  }
}

function shapesOf(explanation) {
  if (!explanation) return "";
  const shapes = [...(explanation.towards || []), ...(explanation.away || [])].filter((p) => p.piece.startsWith("<"));
  return shapes.length ? "shapes: " + shapes.map((p) => `${p.piece} ${p.weight.toFixed(2)}`).join(", ") : "";
}

function showScores(table, probabilities) {
  table.replaceChildren();
  for (const [label, probability] of Object.entries(probabilities || {})) {
    const row = el("tr");
    row.append(el("td", label), el("td", Number(probability).toFixed(4)));
    table.append(row);
  }
}

// --- Try ----------------------------------------------------------------------------------------------------------

function tryInput(raw) {
  const trimmed = raw.trim();
  if (trimmed.startsWith("{")) {
    try { return { items: [{ fields: JSON.parse(trimmed) }] }; } catch (failure) { /* a text that starts with { */ }
  }
  return { text: raw };
}

async function predict() {
  const request = { ...tryInput($("try-text").value), explain: true, review: $("try-review").checked };
  const answer = await api("POST", "predict", request);
  const item = answer.predictions[0];
  $("try-decision").textContent = item.decision;
  $("try-decision").className = "decision" + (item.decision === "review" ? " review" : "");
  $("try-label").textContent = item.decision === "review" ? `(the model leans ${item.label})` : `(${item.source})`;
  const input = request.text !== undefined ? request.text : request.items[0].fields;
  showInput($("try-highlighted"), input, item.explanation);
  $("try-shapes").textContent = shapesOf(item.explanation);
  showScores($("try-scores"), item.probabilities);
  $("try-model").textContent = `${answer.model_label} (${answer.model_version})`;
  $("try-result").hidden = false;
  say(item.decision === "review" && request.review ? "Too close to call: queued for review." : "Answered.", "ok");
}

// --- Queue: one item, one key per label, a key to skip ----------------------------------------------------------

async function loadLabels() {
  if (!state.labels.length) state.labels = (await api("GET", "model")).labels;
}

async function refillQueue() {
  const answer = await api("GET", "review/items?kind=review&limit=5");
  state.queue = answer.items;
  state.queueLeft = answer.remaining;
}

function showQueueItem() {
  const item = state.queue[0];
  $("queue-left").textContent = `(${state.queueLeft} left)`;
  $("queue-item").hidden = !item;
  $("queue-empty").hidden = Boolean(item);
  if (!item) return;
  showInput($("queue-text"), item.input, item.explanation);
  showScores($("queue-scores"), item.probabilities);
  $("queue-meta").textContent = `the model says ${item.label}; asked ${item.seen} time(s); queued ${item.queued_at}`;
  const keys = $("queue-keys");
  keys.replaceChildren();
  state.labels.forEach((label, index) => {
    const button = el("button");
    button.type = "button";
    button.append(el("kbd", String(index + 1)), document.createTextNode(` ${label}`));
    button.addEventListener("click", () => run(() => labelItem(label)));
    keys.append(button);
  });
  const skip = el("button");
  skip.type = "button";
  skip.append(el("kbd", "S"), document.createTextNode(" skip"));
  skip.addEventListener("click", () => run(skipItem));
  keys.append(skip);
}

async function openQueue() {
  await loadLabels();
  await refillQueue();
  showQueueItem();
  say(state.queue.length ? "Press a label's number key, or S to skip." : "The queue is empty.", "ok");
}

async function advance(call) {
  const item = state.queue.shift();
  state.queueLeft = Math.max(0, state.queueLeft - 1);
  showQueueItem(); // the next item at once; the call and a refill follow
  try {
    const done = await call(item);
    state.queueLeft = done.remaining;
  } catch (failure) {
    state.queue.unshift(item);
    state.queueLeft += 1;
    showQueueItem();
    throw failure;
  }
  if (!state.queue.length) await refillQueue();
  showQueueItem();
}

async function labelItem(label) {
  if (!state.queue.length) return;
  await advance((item) => api("POST", "review/label", { id: item.id, label }));
  say(`Labelled ${label}: sent as a reviewer's verdict.`, "ok");
}

async function skipItem() {
  if (!state.queue.length) return;
  await advance((item) => api("POST", "review/skip", { id: item.id }));
  say("Skipped.", "ok");
}

// --- Held -----------------------------------------------------------------------------------------------------------

async function openHeld() {
  const answer = await api("GET", "review/items?kind=held&limit=50");
  state.held = answer.items;
  $("held-left").textContent = `(${answer.remaining} waiting)`;
  const list = $("held-list");
  list.replaceChildren();
  for (const item of state.held) {
    const entry = el("li", null, "card");
    const text = el("div", null, "text");
    showInput(text, item.input, null);
    entry.append(el("p", `claimed label: ${item.label}`), text, el("p", `held because ${item.reason}`, "muted"));
    for (const [decision, title] of [["accept", "Accept"], ["reject", "Reject"]]) {
      const button = el("button", title);
      button.type = "button";
      button.addEventListener("click", () => run(() => judge(item, decision)));
      entry.append(button, document.createTextNode(" "));
    }
    list.append(entry);
  }
  $("held-empty").hidden = state.held.length > 0;
  say(state.held.length ? "Tab to a verdict's Accept or Reject and press Enter." : "No held verdicts.", "ok");
}

async function judge(item, decision) {
  const done = await api("POST", "review/held", { key: item.id, decision });
  await openHeld();
  const reach = done.answers_at_once ? " It now answers its text for every client." : "";
  say(`${done.status === "accepted" ? "Accepted" : "Rejected"}.${reach} ${done.remaining} still held.`, "ok");
}

// --- Model ----------------------------------------------------------------------------------------------------------

function metric(metrics, name) {
  const value = metrics && metrics[name];
  return typeof value === "number" ? value.toFixed(4) : "";
}

async function openModel() {
  const [active, listing] = await Promise.all([api("GET", "model"), api("GET", "model/versions")]);
  $("model-active").textContent = `Active: ${active.label} (${active.version}), labels ${active.labels.join(", ")}` +
    (active.parent ? `, fine-tuned from ${active.parent}` : "");
  const body = $("model-versions").querySelector("tbody");
  body.replaceChildren();
  for (const version of listing.versions) {
    const row = el("tr", null, version.is_active ? "active" : "");
    const how = version.action + (version.restored_from ? ` of ${version.restored_from.slice(0, 8)}` : "");
    for (const cell of [version.label, version.version_id.slice(0, 12), how, version.stored_at.slice(0, 19),
      version.parent, version.verdict_count, metric(version.metrics, "accuracy"), metric(version.metrics, "macro_f1")]) {
      row.append(el("td", cell));
    }
    row.cells[1].title = version.version_id;
    const actions = el("td");
    if (!version.is_active && listing.rollback) {
      const button = el("button", `Roll back to ${version.label}`);
      button.type = "button";
      button.addEventListener("click", () => run(() => rollback(version)));
      actions.append(button);
    } else if (version.is_active) {
      actions.append(el("span", "active", "muted"));
    }
    row.append(actions);
    body.append(row);
  }
  say(listing.rollback ? "Rolling back needs an admin's key." : "Rolling back through the API is off on this stack " +
    "(its ApiRollback parameter): an operator rolls back with `lodbrok rollback --to VERSION_ID`.", "ok");
}

function confirmed(question) {
  const dialog = $("confirm");
  $("confirm-text").textContent = question;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

async function rollback(version) {
  if (!(await confirmed(`Make ${version.label} (${version.version_id}) the active model again? ` +
    "Verdicts remembered since it was stored stop answering."))) {
    say("Rollback cancelled.", "ok");
    return;
  }
  const done = await api("POST", "model/rollback", { to: version.version_id });
  await openModel();
  say(`Rolled back: ${version.label} is active again as version ${done.version_id}.`, "ok");
}

// --- views, key and keyboard ------------------------------------------------------------------------------------

const OPEN = { try: async () => {}, queue: openQueue, held: openHeld, model: openModel };

function show(view) {
  state.view = view;
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const button of document.querySelectorAll("nav button")) {
    if (button.dataset.view === view) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  say("");
  return run(OPEN[view]);
}

function typing(event) {
  const target = event.target;
  return target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
}

function onKey(event) {
  if (event.altKey && /^[1-4]$/.test(event.key)) {
    event.preventDefault();
    show(VIEWS[Number(event.key) - 1]);
    return;
  }
  if (state.view === "try" && event.ctrlKey && event.key === "Enter") {
    event.preventDefault();
    run(predict);
    return;
  }
  if (state.view !== "queue" || typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  const index = Number(event.key) - 1;
  if (Number.isInteger(index) && index >= 0 && index < state.labels.length) {
    event.preventDefault();
    run(() => labelItem(state.labels[index]));
  } else if (event.key === "s" || event.key === "S") {
    event.preventDefault();
    run(skipItem);
  }
}

function showKeyState() {
  const has = Boolean(sessionStorage.getItem(KEY_STORE));
  $("key-state").textContent = has ? "key set for this browser session" : "no key yet";
}

function start() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) { say("Type an API key first.", "error"); return; }
    sessionStorage.setItem(KEY_STORE, key);
    $("key").value = "";
    state.labels = [];
    showKeyState();
    show(state.view);
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    showKeyState();
    say("The key is forgotten.", "ok");
  });
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  $("try-form").addEventListener("submit", (event) => { event.preventDefault(); run(predict); });
  document.addEventListener("keydown", onKey);
  showKeyState();
  show("try");
}

document.addEventListener("DOMContentLoaded", start);
