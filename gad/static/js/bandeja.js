// Notification tray on every page: unread badge, list with "Acepto" / "No puedo" / "Leída", delivery reports,
// and for supervisors the broadcast alerts with their live tally. It rides on the page's live socket
// (live.js dispatches "gad:frame") or, on pages without one, opens its own socket for notifications only.
import { api, coalesced, el, fieldErrors, newKey, newestOnly, sessionIsOver } from "./api.js";
import { connectLive } from "./live.js";

const me = Number(document.body.dataset.usuarioId);
const nivel = Number(document.body.dataset.nivel);
const boton = document.getElementById("bandeja-boton");
const panel = document.getElementById("bandeja-panel");
const lista = document.getElementById("bandeja-lista");
const contador = document.getElementById("bandeja-contador");
const alertasLista = document.getElementById("alertas-abiertas");
const TRAY_KEY = "gad:bandeja-last-event-id";

const ESTADO = { creada: "Nueva", entregada: "Recibida", leida: "Leída", aceptada: "Aceptada", rechazada: "No puede" };
const CAUSA = { asignacion: "Asignación", emergencia: "Emergencia", alerta: "Alerta", escalacion: "Escalada", rechazo: "Rechazo", desasignacion: "Desasignación" };
const TIPO_ALERTA = { codigo_rojo: "Código rojo", evacuacion: "Evacuación", refuerzos: "Refuerzos", aviso: "Aviso" };

// Why an answer was refused, by notification id: kept across the list's redraws (a frame reloads it at any moment,
// the very frame that withdrew the question among them), or the reason vanished a moment after it was shown.
const refused = new Map();

// On the phone page, the page with an outbox (cola.js), an answer goes through it as the page's own questions'
// answers do: without coverage it waits there and is sent in order when the network is back, instead of failing
// with "Sin conexión" and being lost unless the officer remembers to answer again.
// Loaded beside the rest of this module, not before it: awaited first, it held back every listener below (the tray's
// button did nothing, a frame relayed meanwhile was not heard) until cola.js had arrived.
let outbox = null;
const outboxLoaded = document.getElementById("cola-resumen") ? import("./cola.js") : null;
const ACK_PATH = /^\/api\/v1\/notificaciones\/(\d+)\/ack$/; // an outbox item that answers a notification
const RESPUESTA = { acepto: "Acepto", no_puedo: "No puedo", leida: "Leída" };
// Notification id -> {at, respuesta}: its answer, sent from the outbox at `at`, until a list read after that shows it.
const sentAt = new Map();
// Notification id -> the answer waiting in the outbox (read from the outbox itself, whoever on the page queued it).
const waiting = () => outbox?.queuedAnswers() ?? new Map();

function describe(error) {
  // The fields' Spanish messages when the server named them; otherwise the Spanish text of the status.
  const fields = Object.values(fieldErrors(error));
  return fields.length ? fields.join(" ") : (error.message ?? "Error");
}

async function answer(item, respuesta, motivo) {
  const body = motivo ? { respuesta, motivo } : { respuesta };
  const path = `/api/v1/notificaciones/${item.id}/ack`;
  try {
    refused.delete(item.id);
    if (outbox) {
      // Stored (and drawn as waiting, its buttons gone: the outbox's change) before enqueue's first await.
      const result = await outbox.enqueue({ method: "POST", path, body, label: `${RESPUESTA[respuesta]}: ${item.titulo}` });
      if (result?.error) throw result.error;
      if (!result) return; // kept for when the coverage is back
    } else {
      await api(path, { method: "POST", body });
    }
    await load();
  } catch (error) {
    // 409: the question was withdrawn meanwhile (its alert closed, its assignment released): show the list as
    // it stands now, without the buttons, and say why beside the notification.
    refused.set(item.id, describe(error));
    if (error.status === 409) await load().catch(() => {});
    const node = lista.querySelector(`[data-notificacion-id="${item.id}"] .error`);
    if (node) node.textContent = refused.get(item.id);
  }
}

function row(item, stillAsked, queued) {
  const when = new Date(item.creada_en).toLocaleTimeString("es-ES");
  const li = el(
    "li",
    { class: `notificacion prioridad-${item.prioridad}`, "data-notificacion-id": String(item.id), "data-estado": item.estado, "data-causa": item.causa },
    el("p", { class: "cabecera" }, el("strong", {}, item.titulo), " ", el("span", { class: "estado" }, ESTADO[item.estado] ?? item.estado)),
    el("p", { class: "texto" }, item.texto),
    el("p", { class: "meta" }, `${CAUSA[item.causa] ?? item.causa} · ${when}`),
  );
  const acciones = el("div", { class: "acciones" });
  if (queued.has(item.id)) {
    // Whether a send is under way or waits for the network is not known here (a weak signal says online and fails):
    // what is true in both cases is said.
    const cuando = outbox.sessionEnded() ? "cuando vuelva a entrar" : "en cuanto haya cobertura";
    li.append(el("p", { class: "en-cola" }, `${RESPUESTA[queued.get(item.id)]} (sin enviar aún): se enviará ${cuando}.`));
  } else if (sentAt.has(item.id)) {
    li.append(el("p", { class: "en-cola" }, sentAt.get(item.id).respuesta === "leida" ? "Marcada como leída." : "Respuesta enviada."));
  } else if (stillAsked.has(item.id)) {
    const motivo = el("input", { type: "text", maxLength: 500, placeholder: "Motivo (si no puede)", ariaLabel: "Motivo" });
    acciones.append(
      el("button", { type: "button", class: "acepto", onclick: () => answer(item, "acepto") }, "Acepto"),
      el("button", { type: "button", class: "no-puedo", onclick: () => answer(item, "no_puedo", motivo.value.trim() || undefined) }, "No puedo"),
      motivo,
    );
  }
  if (item.leida_en === null && !queued.has(item.id) && !sentAt.has(item.id)) acciones.append(el("button", { type: "button", class: "leida", onclick: () => answer(item, "leida") }, "Marcar leída"));
  if (item.motivo) li.append(el("p", { class: "motivo" }, `Motivo: ${item.motivo}`));
  li.append(acciones, el("p", { class: "error", role: "alert" }, refused.get(item.id) ?? ""));
  return li;
}

const beginLoad = newestOnly();
const beginAlertas = newestOnly();

async function load() {
  const superseded = beginLoad();
  const started = performance.now();
  // The newest 30, and which of them still wait for acepto / no_puedo (pendientes: not answered, its assignment
  // not released, its alert not closed): any pending one among the newest 30 is among the 30 newest pending.
  const [{ data }, { data: pending }] = await Promise.all([api("/api/v1/notificaciones?limit=30"), api("/api/v1/notificaciones?pendientes=true&limit=30")]);
  if (superseded()) return;
  for (const [id, sent] of sentAt) if (sent.at < started) sentAt.delete(id); // this list was read after they were sent
  show({ items: data.items, stillAsked: pending.items.map((n) => n.id), noLeidas: data.no_leidas });
  if (outbox) {
    try {
      localStorage.setItem(KEPT, JSON.stringify({ usuario: me, items: data.items, stillAsked: pending.items.map((n) => n.id), noLeidas: data.no_leidas }));
    } catch {
      /* storage full or refused: the tray still works online */
    }
  }
}

function show({ items, stillAsked, noLeidas }) {
  shown = { items, stillAsked: new Set(stillAsked) };
  contador.textContent = String(noLeidas);
  contador.dataset.count = String(noLeidas);
  boton.classList.toggle("hay-nuevas", noLeidas > 0);
  draw();
}

// On the phone page, which opens without coverage, the last list is kept (as the page keeps its tareas) and shown
// until a fresh one arrives: reopened offline, the tray showed nothing, not even the answers waiting to be sent.
// Logging out forgets it with the rest of the usuario's copies (cola.js forgetOnLogout: every gad: key).
const KEPT = `gad:bandeja:lista:${me}`;
function showKept() {
  if (sessionIsOver()) return; // a copy of a session now over (idle, offline): not shown to whoever holds the phone
  try {
    const kept = JSON.parse(localStorage.getItem(KEPT) ?? "null");
    if (kept?.usuario === me && !shown) show(kept);
  } catch {
    /* a damaged copy is ignored */
  }
}

// The last list the server gave (null until one arrived), drawn again when only the answers waiting in the outbox
// changed. `drawnFor` is which answers waited when it was last drawn: the outbox changes with every position fix
// too, and redrawing then would clear a motivo being typed.
let shown = null;
let drawnFor = "";
const answersKey = () => JSON.stringify([[...waiting()], [...sentAt.keys()]]);
function draw() {
  if (!shown) return; // nothing loaded yet (no coverage since the page opened): not "Sin notificaciones"
  const queued = waiting();
  drawnFor = answersKey();
  lista.replaceChildren(...(shown.items.length ? shown.items.map((item) => row(item, shown.stillAsked, queued)) : [el("li", { class: "vacia" }, "Sin notificaciones")]));
}

// An answer the outbox sent later (coverage back, or after logging in again): the list as the server has it now, and
// a refusal said beside its notification as when answered online.
function wireOutbox(cola) {
  outbox = cola;
  cola.onSent?.((item, result) => {
    const id = Number(ACK_PATH.exec(item.path ?? "")?.[1]);
    if (!id) return;
    if (result?.error) refused.set(id, describe(result.error));
    else sentAt.set(id, { at: performance.now(), respuesta: item.body?.respuesta }); // no buttons until a list read after it
    reloadSoon();
  });
  // Whatever changes the outbox (an answer the question panel queued, one sent, one refused) is drawn at once: the
  // tray kept offering Acepto / No puedo for a question the panel had already answered into the outbox.
  cola.onChange(() => answersKey() !== drawnFor && draw());
  showKept();
}
const outboxWired = outboxLoaded?.then(wireOutbox);

const reloadSoon = coalesced(() => load().catch(() => {}), 150);

// --- alerts (supervisors) --------------------------------------------------------------------------

// Alert id -> the alert; `vivo`: when (performance.now()) a frame last changed it.
const alertas = new Map();

// An alert as a REST answer asked for at `desde` shows it, unless a frame changed it after that: the frame is
// newer (its tally, or its closing) and the older answer, arriving last, would put the tally back or re-open it.
function fromRest(a, desde) {
  const live = alertas.get(a.id);
  alertas.set(a.id, live?.vivo > desde ? { ...a, ...live, cerrada_en: live.cerrada_en ?? a.cerrada_en } : a);
}

function alertaRow(a) {
  const faltan = el("ul", { class: "faltan" });
  const li = el(
    "li",
    { class: "alerta", "data-alerta-id": String(a.id) },
    el("p", {}, el("strong", {}, TIPO_ALERTA[a.tipo] ?? a.tipo), `: ${a.texto}`),
    el("p", { class: "recuento" }, `${a.confirmados} / ${a.total} confirmados`, a.no_pueden ? ` · ${a.no_pueden} no pueden` : ""),
    el(
      "div",
      { class: "acciones" },
      el("button", { type: "button", onclick: () => showMissing(a.id, faltan) }, "Quién falta"),
      el("button", { type: "button", onclick: () => alertaAction(a.id, "reenviar") }, "Reenviar a quien falta"),
      el("button", { type: "button", onclick: () => alertaAction(a.id, "cerrar") }, "Cerrar"),
    ),
    faltan,
  );
  return li;
}

function renderAlertas() {
  if (!alertasLista) return;
  const abiertas = [...alertas.values()].filter((a) => !a.cerrada_en).sort((x, y) => y.id - x.id);
  alertasLista.replaceChildren(...(abiertas.length ? abiertas.map(alertaRow) : [el("li", { class: "vacia" }, "Ninguna")]));
}

async function showMissing(id, node) {
  const { data } = await api(`/api/v1/alertas/${id}`);
  node.replaceChildren(...data.faltan.map((f) => el("li", {}, `${f.nombre}${f.entregada_en ? " (recibida)" : " (sin recibir)"}`)));
}

async function alertaAction(id, action) {
  const desde = performance.now();
  const { data } = await api(`/api/v1/alertas/${id}/${action}`, { method: "POST" });
  fromRest(data, desde);
  renderAlertas();
}

async function loadAlertas() {
  if (!alertasLista) return;
  const superseded = beginAlertas();
  const desde = performance.now();
  const { data } = await api("/api/v1/alertas?abiertas=true&limit=20");
  if (superseded()) return;
  // One a frame created, tallied or closed while this list was read keeps what the frame said.
  const vivas = [...alertas.values()].filter((a) => a.vivo > desde);
  alertas.clear();
  for (const a of vivas) alertas.set(a.id, a);
  for (const a of data.items) fromRest(a, desde);
  renderAlertas();
}

// One alert per filled-in form: a double click, or a retry after an answer that never came, sends the same key and
// the server answers the first alert again instead of broadcasting a second one (every phone asked twice).
let alertaKey = newKey();
// Changed by hand, it is another alert (the same key with another body would be refused).
document.getElementById("alerta-form")?.addEventListener("input", () => (alertaKey = newKey()));
document.getElementById("alerta-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const enviar = form.querySelector('button[type="submit"]');
  if (enviar.disabled) return;
  const fields = Object.fromEntries(new FormData(form));
  const body = { tipo: fields.tipo, texto: fields.texto, destino: fields.destino };
  if (fields.destino === "unidad") body.unidad = fields.unidad;
  const error = document.getElementById("alerta-error");
  error.textContent = "";
  enviar.disabled = true;
  try {
    const { data } = await api("/api/v1/alertas", { method: "POST", body, idempotencyKey: alertaKey });
    alertaKey = newKey();
    alertas.set(data.id, data);
    renderAlertas();
    form.reset();
  } catch (problem) {
    error.textContent = describe(problem);
  } finally {
    enviar.disabled = false;
  }
});

// --- live frames -----------------------------------------------------------------------------------

function handle(frame, socket) {
  if (frame.topic !== "notificaciones") return;
  const data = frame.data;
  if (frame.event_type === "notification" && data.usuario_id === me) {
    socket?.send(JSON.stringify({ event_type: "notification_received", data: { ids: [data.id] } }));
    if (data.requiere_respuesta && navigator.vibrate && navigator.userActivation?.hasBeenActive !== false) navigator.vibrate(200);
    reloadSoon();
  } else if (["notification_read", "notification_answered", "notification_delivered", "notification_withdrawn"].includes(frame.event_type) && data.usuario_id === me) {
    reloadSoon();
  } else if (["alert_created", "alert_tally", "alert_closed"].includes(frame.event_type)) {
    const id = data.alerta_id;
    alertas.set(id, { ...(alertas.get(id) ?? {}), ...data, id, vivo: performance.now(), ...(frame.event_type === "alert_closed" ? { cerrada_en: data.cerrada_en ?? "cerrada" } : {}) });
    renderAlertas();
  }
}

window.addEventListener("gad:frame", (event) => handle(event.detail.frame, event.detail.socket));
// The page's socket was told to refetch (it slept past the replay window): the frames it missed are never
// replayed, so the tray reads again too, or it would keep counting as unread what was read meanwhile.
window.addEventListener("gad:resync", resync);

function resync() {
  reloadSoon();
  loadAlertas().catch(() => {});
}

let own = null;
function ownSocket() {
  // Pages without a live view: one socket for the tray, subscribed to notifications only.
  const others = ["tareas", "emergencias", "efectivos", "sistema", ...(nivel >= 3 ? ["usuarios", "seguridad"] : [])];
  own = connectLive({
    key: TRAY_KEY,
    relay: false,
    onAck: (socket) => socket.send(JSON.stringify({ event_type: "unsubscribe", data: { topics: others } })),
    onEvent: (frame, { socket }) => handle(frame, socket),
    onResync: resync,
  });
}

function showTray(open) {
  panel.hidden = !open;
  boton.setAttribute("aria-expanded", String(open));
}
boton.addEventListener("click", () => showTray(panel.hidden));
// Closed as a menu is: Escape (focus back on its button), or a click anywhere outside it (on a phone it covers the page).
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !panel.hidden) {
    showTray(false);
    boton.focus();
  }
});
document.addEventListener("click", (event) => {
  if (!panel.hidden && !panel.contains(event.target) && !boton.contains(event.target)) showTray(false);
});

// A page with a live view says so in its markup (data-vista-en-vivo) and its script opens the socket once its own
// data is in, however long that takes; guessing from a delay opened a second socket beside a slow board. Should that
// page never get its socket up (its data would not load), the tray opens its own rather than hear nothing.
if (!("vistaEnVivo" in document.body.dataset)) ownSocket();
else setTimeout(() => document.body.dataset.live || ownSocket(), 15000);
// The page's socket came up after all (its data took longer than that): it relays the frames, and the tray's own
// socket goes rather than hold a second connection (and a second replay of every frame) for the page's life.
window.addEventListener("gad:live", () => {
  own?.close();
  own = null;
});
// A first load that fails (a moment's 503) leaves the socket open: its next frame or resync loads again. On the phone
// page it waits for the outbox: the list is drawn with the answers waiting there, and kept for offline.
await outboxWired;
await Promise.allSettled([load(), loadAlertas()]);
