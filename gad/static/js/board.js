// Tablero: a live console. Map of efectivos and open emergencies beside the estado columns, the latest
// events from the event log (then live), counts linking to filtered lists; nothing needs a reload.
import { api, coalesced, el, fetchAll, newestOnly, readUntilDone, sayReadFailure, ESTADOS, DISPONIBILIDAD } from "./api.js";
import { connectLive } from "./live.js";
import { createMap } from "./mapview.js";
import { setupEmergencyDialog } from "./emergencia.js";

const tareas = new Map();
const efectivos = new Map();
const feed = document.getElementById("feed");
const anuncio = document.getElementById("anuncio");
const fresh = new Set(); // emergencies raised since this board opened: highlighted until acknowledged
const answers = new Map(); // tarea id -> latest "acepto" / "no puedo" from the assigned officer
const OPEN = ["programada", "en_curso", "pausada"];
// Closed tareas are history, which only grows (a year of a busy centre: hundreds of thousands): a reload reads every
// open tarea but only the latest closed of each closed estado (by cerrada_en, not by creation: a patrol created last
// week and finished a minute ago is news), the columns show those latest closed ones, and they count the server's total, read again after
// the frames that change it (a tarea closed, a closed one deleted: possibly one the board never read, so counting the
// cards held could not tell).
const CLOSED = ["finalizada", "cancelada"];
const CLOSED_SHOWN = 20;
const closedTotals = {}; // closed estado -> the server's count
const beginTotals = newestOnly();

const dialogApi = { pick: () => {} };
const view = createMap(document.getElementById("mapa"), { onPick: (lat, lng) => dialogApi.pick(lat, lng) });
Object.assign(dialogApi, setupEmergencyDialog({ view, efectivoNombre: (id) => efectivos.get(id)?.nombre ?? `efectivo ${id}` }));

function card(tarea) {
  // Closing released its efectivos: "Sin asignar" on a finished tarea read as if nobody had worked it; it says when it
  // closed instead (the order of its column).
  const cerrada = CLOSED.includes(tarea.estado) && tarea.cerrada_en ? `${ESTADOS[tarea.estado]} el ${new Date(tarea.cerrada_en).toLocaleString("es-ES", { dateStyle: "short", timeStyle: "short" })}` : null;
  const asignados = tarea.efectivos.map((e) => e.nombre).join(", ") || cerrada || "Sin asignar";
  const answer = answers.get(tarea.id);
  return el(
    "li",
    { class: `tarjeta prioridad-${tarea.prioridad}${tarea.es_emergencia ? " es-emergencia" : ""}${fresh.has(tarea.id) ? " nueva" : ""}`, "data-tarea-id": String(tarea.id), "data-estado": tarea.estado },
    el("a", { href: `/tareas/${tarea.id}` }, el("span", { class: "codigo" }, tarea.codigo), " ", el("span", { class: "titulo" }, tarea.titulo)),
    el("p", { class: "meta" }, `Prioridad ${tarea.prioridad} · ${tarea.tipo}`),
    el("p", { class: "asignados" }, asignados),
    answer ? el("p", { class: `respuesta respuesta-${answer.respuesta}`, "data-respuesta": answer.respuesta }, answer.texto) : "",
  );
}

function emergencyItem(t) {
  const answer = answers.get(t.id);
  const who = t.efectivos.length ? t.efectivos.map((e) => e.nombre).join(", ") : "SIN ASIGNAR";
  const item = el(
    "li",
    { class: `emergencia${fresh.has(t.id) ? " nueva" : ""}${t.efectivos.length ? "" : " sin-asignar"}`, "data-tarea-id": String(t.id) },
    el("a", { href: `/tareas/${t.id}` }, t.codigo),
    ` — ${who}`,
    answer ? el("span", { class: `respuesta respuesta-${answer.respuesta}`, "data-respuesta": answer.respuesta }, ` · ${answer.texto}`) : "",
  );
  if (t.ubicacion_lat !== null) {
    item.append(" ", el("button", { type: "button", class: "enlace", onclick: () => view.focus(t.ubicacion_lat, t.ubicacion_lng) }, "Ver en el mapa"));
  }
  return item;
}

function render() {
  for (const list of document.querySelectorAll(".tarjetas")) list.replaceChildren();
  const counts = Object.fromEntries(Object.keys(ESTADOS).map((e) => [e, 0]));
  const sorted = [...tareas.values()].sort((a, b) => b.prioridad - a.prioridad || b.id - a.id);
  for (const tarea of sorted) {
    if (CLOSED.includes(tarea.estado)) continue;
    document.querySelector(`.tarjetas[data-estado="${tarea.estado}"]`)?.append(card(tarea));
    counts[tarea.estado] += 1;
  }
  const latestClosedFirst = (a, b) => Date.parse(b.cerrada_en) - Date.parse(a.cerrada_en) || b.id - a.id;
  for (const estado of CLOSED) {
    const closed = sorted.filter((t) => t.estado === estado).sort(latestClosedFirst);
    document.querySelector(`.tarjetas[data-estado="${estado}"]`)?.append(...closed.slice(0, CLOSED_SHOWN).map(card));
    counts[estado] = closed.length;
  }
  Object.assign(counts, closedTotals);
  for (const [estado, n] of Object.entries(counts)) {
    const counter = document.querySelector(`[data-contador="${estado}"]`);
    if (counter) counter.textContent = String(n);
  }
  const emergencias = sorted.filter((t) => t.es_emergencia && OPEN.includes(t.estado));
  document.getElementById("contador-emergencias").textContent = String(emergencias.length);
  document.getElementById("lista-emergencias").replaceChildren(...(emergencias.length ? emergencias.map(emergencyItem) : [el("li", { class: "vacio" }, "Ninguna emergencia abierta.")]));
  view.showTareas(sorted.filter((t) => OPEN.includes(t.estado)));
}

const beginTareas = newestOnly();
const beginEfectivos = newestOnly();
const beginFeed = newestOnly();
const beginTarea = new Map(); // tarea id -> its own newestOnly: two frames of one tarea ask for it twice
const leida = new Map(); // tarea id -> when (performance.now()) the read that last put or took off its card was asked

async function loadTareas() {
  const superseded = beginTareas();
  const totalsSuperseded = beginTotals();
  const desde = performance.now();
  const [{ items: open }, ...closed] = await Promise.all([
    fetchAll(`/api/v1/tasks?estado=${OPEN.join(",")}&sort=-created_at`),
    ...CLOSED.map((estado) => api(`/api/v1/tasks?estado=${estado}&sort=-cerrada_en&limit=${CLOSED_SHOWN}`)),
  ]);
  if (superseded()) return;
  const items = [...open, ...closed.flatMap(({ data }) => data.items)];
  if (!totalsSuperseded()) CLOSED.forEach((estado, i) => (closedTotals[estado] = closed[i].data.total));
  // A live refresh may have shown a newer version of a tarea while this list was read: versions only grow. And a
  // tarea read on its own after this list was asked for is newer than the list: a card its frame added (created
  // meanwhile) stays, and one its frame took off (deleted, or no longer visible to this user) is not put back.
  const newer = (id) => (leida.get(id) ?? -Infinity) > desde;
  const seen = new Map(tareas);
  tareas.clear();
  for (const tarea of items) {
    if (newer(tarea.id) && !seen.has(tarea.id)) continue;
    tareas.set(tarea.id, (seen.get(tarea.id)?.version ?? 0) > tarea.version ? seen.get(tarea.id) : tarea);
  }
  for (const [id, tarea] of seen) if (!tareas.has(id) && newer(id)) tareas.set(id, tarea);
  render();
}

async function loadEfectivos() {
  const superseded = beginEfectivos();
  try {
    const { items } = await fetchAll("/api/v1/efectivos?");
    if (superseded()) return;
    efectivos.clear();
    const counts = {};
    for (const e of items) {
      efectivos.set(e.id, e);
      counts[e.estado_disponibilidad] = (counts[e.estado_disponibilidad] ?? 0) + 1;
    }
    view.showEfectivos(items);
    document.getElementById("disponibilidad").replaceChildren(
      ...Object.entries(DISPONIBILIDAD).map(([k, label]) => el("li", { "data-disponibilidad": k }, el("a", { href: `/efectivos?estado_disponibilidad=${k}` }, `${label}: ${counts[k] ?? 0}`))),
      // On duty = inside a turno and not on licencia; independent of the availability above.
      el("li", { "data-en-servicio": "true", class: "en-servicio-total" }, `En servicio: ${items.filter((e) => e.en_servicio).length}`),
    );
  } catch {
    /* an efectivo sees only their own efectivo; the panel simply shows less */
  }
}

async function loadClosedTotals() {
  const superseded = beginTotals();
  const answers = await Promise.all(CLOSED.map((estado) => api(`/api/v1/tasks?estado=${estado}&limit=1`)));
  if (superseded()) return;
  CLOSED.forEach((estado, i) => (closedTotals[estado] = answers[i].data.total));
  render();
}
const loadClosedTotalsSoon = coalesced(loadClosedTotals, 500);

async function refreshTarea(id) {
  if (!beginTarea.has(id)) beginTarea.set(id, newestOnly());
  const superseded = beginTarea.get(id)();
  const desde = performance.now();
  try {
    const { data } = await api(`/api/v1/tasks/${id}`);
    // A full reload (resync) may have brought a newer version meanwhile: versions only grow.
    if (superseded() || (tareas.get(id)?.version ?? 0) > data.version) return;
    // History the last reload did not read (closed before it, edited now) stays off the board, as it was.
    if (!tareas.has(id) && CLOSED.includes(data.estado)) return;
    tareas.set(id, data);
    leida.set(id, desde);
  } catch (error) {
    if (superseded()) return;
    if (error.status === 404 || error.status === 403) {
      tareas.delete(id);
      leida.set(id, desde);
    }
  }
  render();
}

const EVENT_TEXT = {
  task_created: "Tarea creada",
  task_updated: "Tarea modificada",
  task_status_changed: "Cambio de estado",
  task_assigned: "Asignación",
  task_unassigned: "Desasignación",
  task_deleted: "Tarea borrada",
  emergency_created: "EMERGENCIA",
  efectivo_created: "Efectivo creado",
  efectivo_updated: "Efectivo modificado",
  efectivo_status_changed: "Disponibilidad",
  efectivo_location_update: "Posición",
  user_created: "Usuario creado",
  user_updated: "Usuario modificado",
  notification: "Aviso enviado",
  notification_answered: "Respuesta",
  notification_escalated: "Sin respuesta a tiempo",
  alert_created: "Alerta enviada",
  alert_closed: "Alerta cerrada",
  turnos_created: "Turnos planificados",
  turno_updated: "Turno cambiado",
  turno_deleted: "Turno borrado",
  licencia_created: "Licencia concedida",
  licencia_deleted: "Licencia retirada",
  import_started: "Importación iniciada",
  import_batch: "Importación: lote",
  import_finished: "Importación terminada",
  login: "Inicio de sesión",
  login_failed: "Acceso fallido",
  account_locked: "Cuenta bloqueada",
  logout: "Cierre de sesión",
  tokens_revoked: "Sesiones cerradas",
  role_changed: "Cambio de rol",
  user_disabled: "Usuario desactivado",
  permission_denied: "Acceso denegado",
  security_events_aggregated: "Eventos de seguridad",
};
// Bookkeeping of deliveries and tallies: the feed keeps what people did, not what their devices reported.
const NOT_IN_FEED = new Set(["efectivo_location_update", "notification_delivered", "notification_read", "notification_withdrawn", "alert_tally"]);

function describe(frame) {
  const d = frame.data ?? {};
  const what = EVENT_TEXT[frame.event_type] ?? frame.event_type.replaceAll("_", " ");
  const subject = d.codigo ?? d.nombre ?? d.titulo ?? d.destinatario ?? d.email ?? "";
  const extra = frame.event_type === "task_status_changed" && d.estado ? ` → ${ESTADOS[d.estado] ?? d.estado}` : frame.event_type === "efectivo_status_changed" && d.to ? ` → ${DISPONIBILIDAD[d.to] ?? d.to}` : "";
  return `${what}${subject ? ` · ${subject}` : ""}${extra}`;
}

function addToFeed(frame, { prepend = true } = {}) {
  if (NOT_IN_FEED.has(frame.event_type)) return; // positions move the map; the feed keeps what people did
  // A resume replays from the last event an earlier page saw: what happened since is in the log read on opening too.
  if (feed.querySelector(`[data-evento-id="${frame.id}"]`)) return;
  const when = new Date(frame.timestamp).toLocaleTimeString("es-ES");
  const item = el("li", { "data-evento-id": String(frame.id), class: frame.topic === "emergencias" ? "evento-emergencia" : "" }, el("time", { dateTime: frame.timestamp }, when), ` ${describe(frame)}`);
  if (!prepend) {
    feed.append(item);
  } else {
    // Newest first, by id (commit order): a resume replays events older than the ones the log read on opening
    // listed, and on top they would show older times above newer ones.
    const older = [...feed.children].find((other) => Number(other.dataset.eventoId) < frame.id);
    if (older) feed.insertBefore(item, older);
    else if (feed.children.length < 40) feed.append(item);
    else return; // older than everything a full feed shows
  }
  while (feed.children.length > 40) feed.lastChild.remove();
}

async function loadFeed() {
  const superseded = beginFeed();
  try {
    const { data } = await api("/api/v1/eventos/recientes?limit=30");
    if (superseded()) return;
    // Frames that came while the log was read, newer than it (ids are in commit order), stay on top: the log does not list them.
    const newest = Math.max(0, ...data.map((frame) => frame.id));
    feed.replaceChildren(...[...feed.children].filter((item) => Number(item.dataset.eventoId) > newest));
    for (const frame of data) addToFeed(frame, { prepend: false });
  } catch {
    /* the feed fills live */
  }
}

function onAnswer(frame) {
  const d = frame.data ?? {};
  if (!d.tarea_id || !["acepto", "no_puedo"].includes(d.respuesta)) return;
  const quien = d.destinatario ?? efectivoDeUsuario(d.usuario_id) ?? "El efectivo";
  const texto = d.respuesta === "acepto" ? `${quien} acepta` : `${quien} no puede${d.motivo ? `: ${d.motivo}` : ""}`;
  answers.set(d.tarea_id, { respuesta: d.respuesta, texto });
  anuncio.textContent = `${texto} (${tareas.get(d.tarea_id)?.codigo ?? "tarea " + d.tarea_id})`;
  render();
}

function efectivoDeUsuario(usuarioId) {
  for (const e of efectivos.values()) if (e.usuario_id === usuarioId) return e.nombre;
  return null;
}

// In a place of its own: #anuncio carries the emergencies, and a failure said there would replace them.
const sayTareas = sayReadFailure(document.getElementById("lectura-fallida"), "las tareas");
await Promise.all([readUntilDone(loadTareas, sayTareas), loadEfectivos(), loadFeed()]);
const loadEfectivosSoon = coalesced(loadEfectivos, 250);
connectLive({
  onEvent(frame) {
    addToFeed(frame);
    if (frame.event_type === "emergency_created") {
      fresh.add(frame.data.id);
      anuncio.textContent = `Nueva emergencia ${frame.data.codigo ?? ""}`;
    }
    if (frame.event_type === "notification_answered") onAnswer(frame);
    if ((frame.topic === "tareas" || frame.topic === "emergencias") && frame.data?.id) {
      refreshTarea(frame.data.id);
      // Only what moves a closed count: each read counts every closed tarea of its estado, too dear for every frame.
      if (CLOSED.includes(frame.data.estado) && ["task_status_changed", "task_deleted"].includes(frame.event_type)) loadClosedTotalsSoon();
    }
    if (frame.topic === "efectivos" || frame.topic === "turnos") {
      loadEfectivosSoon();
    }
  },
  onResync() {
    loadTareas();
    loadEfectivos();
    loadFeed();
  },
});
