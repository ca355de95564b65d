// edgegw status page: polls /status/data every 2 s and posts the two forms. Served by edgegw
// itself (no CDN). URLs are built from location.origin, so a page opened as
// http://user:pass@host/ (credentials in the URL) can still fetch: the browser resends the
// Basic credentials it has for the origin.
"use strict";

const POLL_MS = 2000;

function url(path) {
  return new URL(path, window.location.origin).toString();
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(tableId, items, render) {
  const body = document.querySelector(`#${tableId} tbody`);
  const rows = items.map((item) => {
    const row = document.createElement("tr");
    render(row, item);
    return row;
  });
  body.replaceChildren(...rows);
}

function time(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleTimeString() : "";
}

function options(select, values, labels) {
  const chosen = select.value;
  select.replaceChildren(
    ...values.map((value, index) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = labels[index];
      return option;
    }),
  );
  if (values.includes(chosen)) select.value = chosen;
}

function show(view) {
  const ready = document.getElementById("ready");
  ready.textContent = view.ready ? "ready" : "not ready";
  ready.className = `badge ${view.ready ? "ok" : "bad"}`;
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  fill("modems", view.modems.modems, (row, modem) => {
    const health = modem.health;
    row.dataset.modem = modem.name;
    cell(row, modem.name);
    cell(row, health.state, `state-${health.state}`);
    cell(row, [health.operator, health.registration].filter(Boolean).join(" "));
    cell(row, health.signal_dbm === null ? "" : `${health.signal_dbm} dBm`);
    cell(row, health.sim);
    cell(row, modem.queued + modem.sending);
    cell(row, modem.sentLastHour);
    cell(row, modem.sentLastDay);
    cell(row, health.last_error, "text");
  });
  fill("services", view.services, (row, service) => {
    cell(row, service.id);
    cell(row, service.name);
    cell(row, service.queued);
    const backlog = Object.entries(service.backlog).map(([kind, count]) => `${kind} ${count}`);
    cell(row, backlog.join(", ") || "0");
  });
  fill("messages", view.messages, (row, message) => {
    row.dataset.id = message.id;
    cell(row, message.id);
    cell(row, message.service);
    cell(row, message.recipient);
    cell(row, message.state, `state-${message.state}`);
    cell(row, message.modem);
    cell(row, time(message.updatedAt));
  });
  fill("inbound", view.inbound, (row, message) => {
    row.dataset.id = message.id;
    cell(row, message.id);
    cell(row, message.originator);
    cell(row, message.content, "text");
    cell(row, message.modem);
    cell(row, message.service);
    cell(row, time(message.receivedAt));
  });
  const ids = view.services.map((service) => String(service.id));
  options(document.getElementById("send-service"), ids, view.services.map((s) => `${s.id} ${s.name}`));
  document.getElementById("simulate").hidden = view.simulated.length === 0;
  options(document.getElementById("simulate-modem"), view.simulated, view.simulated);
}

async function refresh() {
  try {
    const answer = await fetch(url("/status/data"), { cache: "no-store" });
    if (answer.ok) show(await answer.json());
  } catch (error) {
    document.getElementById("updated").textContent = `cannot reach edgegw: ${error}`;
  }
}

function wire(formId, path, resultId, describe) {
  document.getElementById(formId).addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const result = document.getElementById(resultId);
    const answer = await fetch(url(path), {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
    });
    const body = await answer.json();
    result.textContent = answer.ok ? describe(body) : `refused: ${body.detail || answer.status}`;
    if (answer.ok) form.reset();
    refresh();
  });
}

wire("send", "/status/send", "send-result", (body) => `queued as ${body.messageId}`);
wire("simulate", "/status/simulate-mo", "simulate-result", () => "arrived at the modem");
refresh();
setInterval(refresh, POLL_MS);
