// Mi servicio: the field officer's phone page. My tareas with start/pause/resume/finish, my availability in
// one tap, my position shared (throttled by time and distance), SOS, live updates with resume, and an outbox
// for everything done without coverage. The last known data is kept so the page opens offline.
import { age, api, el, ESTADOS } from "./api.js";
import { connectLive } from "./live.js";
import * as cola from "./cola.js";

const root = document.getElementById("mi");
const me = Number(root.dataset.usuarioId);
const operador = root.dataset.operador === "si";
const CACHE = "gad:mi:datos";
const SHARE = "gad:mi:compartir";
// Battery: a fix is sent when it moved MIN_MOVE_M after at least MIN_GAP_S, or at least every MAX_GAP_S.
const MIN_GAP_S = 15;
const MIN_MOVE_M = 50;
const MAX_GAP_S = 120;
const ACCIONES = {
  programada: [["en_curso", "Iniciar"]],
  en_curso: [["pausada", "Pausar"], ["finalizada", "Finalizar"]],
  pausada: [["en_curso", "Reanudar"], ["finalizada", "Finalizar"]],
};
let efectivo = null;
let tareas = [];
let lastFix = null; // {lat, lng, at} of the last fix handed to the outbox
let serverSaw = null;
let watchId = null;
let alerta = null; // {tareaId, notificacionId}

const $ = (id) => document.getElementById(id);

function saveCache() {
  localStorage.setItem(CACHE, JSON.stringify({ efectivo, tareas, at: new Date().toISOString() }));
}

function loadCache() {
  try {
    const data = JSON.parse(localStorage.getItem(CACHE) ?? "null");
    if (data && data.efectivo?.usuario_id === me) return data;
  } catch {
    /* a damaged cache is ignored */
  }
  return null;
}

function renderEfectivo() {
  const info = $("mi-efectivo");
  const buttons = $("disponibilidad").querySelectorAll("button");
  if (!efectivo) {
    info.textContent = "Su usuario no está vinculado a ningún efectivo: pida a su supervisor que lo vincule.";
    buttons.forEach((b) => (b.disabled = true));
    return;
  }
  info.textContent = `${efectivo.codigo_interno} · ${efectivo.nombre}${efectivo.estado_disponibilidad === "en_tarea" ? " · en tarea (se libera al terminarla)" : ""}`;
  buttons.forEach((b) => {
    b.disabled = efectivo.estado_disponibilidad === "en_tarea";
    b.setAttribute("aria-pressed", String(b.dataset.estado === efectivo.estado_disponibilidad));
  });
  serverSaw = efectivo.posicion_en;
  renderPosition();
}

function tareaCard(t) {
  const when = t.inicio_programado ? new Date(t.inicio_programado).toLocaleString("es-ES", { dateStyle: "short", timeStyle: "short" }) : "";
  const motivoId = `motivo-${t.id}`;
  const card = el(
    "li",
    { class: `mi-tarea prioridad-${t.prioridad}${t.es_emergencia ? " es-emergencia" : ""}`, "data-tarea-id": String(t.id), "data-estado": t.estado },
    el("h3", {}, el("span", { class: "codigo" }, t.codigo), " ", t.titulo),
    el("p", { class: "meta" }, `${ESTADOS[t.estado]} · prioridad ${t.prioridad}${when ? ` · ${when}` : ""}`),
    t.descripcion ? el("p", {}, t.descripcion) : "",
    t.ubicacion_descripcion ? el("p", { class: "meta" }, t.ubicacion_descripcion) : "",
  );
  const acciones = ACCIONES[t.estado] ?? [];
  if (acciones.length) {
    card.append(el("label", { for: motivoId }, "Motivo (opcional)"), el("input", { id: motivoId, maxLength: 500 }));
    card.append(
      el(
        "div",
        { class: "acciones" },
        ...acciones.map(([estado, label]) => el("button", { type: "button", class: "boton-grande", "data-transicion": estado, onclick: () => transition(t, estado, label, card.querySelector(`#${motivoId}`).value.trim()) }, label)),
      ),
    );
  }
  return card;
}

function renderTareas() {
  const abiertas = tareas.filter((t) => ["programada", "en_curso", "pausada"].includes(t.estado));
  const orden = { en_curso: 0, pausada: 1, programada: 2 };
  abiertas.sort((a, b) => orden[a.estado] - orden[b.estado] || (a.inicio_programado ?? "").localeCompare(b.inicio_programado ?? ""));
  // Live updates redraw the cards: keep what the officer is typing (and where) across the redraw.
  const typed = new Map([...$("actuales").querySelectorAll("input")].map((input) => [input.id, input.value]));
  const focused = document.activeElement?.id;
  $("actuales").replaceChildren(...(abiertas.length ? abiertas.map(tareaCard) : [el("li", { class: "vacio" }, "No tiene tareas abiertas.")]));
  for (const [id, value] of typed) {
    const input = document.getElementById(id);
    if (input) input.value = value;
  }
  if (focused && $("actuales").querySelector(`#${CSS.escape(focused)}`)) document.getElementById(focused).focus();
  const hechas = tareas.filter((t) => !["programada", "en_curso", "pausada"].includes(t.estado));
  $("historial").replaceChildren(...hechas.map((t) => el("li", {}, `${t.codigo} · ${t.titulo} · ${ESTADOS[t.estado]}`)));
}

async function load() {
  try {
    efectivo = operador ? await ownEfectivo() : ((await api("/api/v1/efectivos?limit=1")).data.items[0] ?? null);
    const filtro = efectivo && operador ? `&efectivo_id=${efectivo.id}` : "";
    const [abiertas, hechas] = await Promise.all([
      api(`/api/v1/tasks?estado=programada,en_curso,pausada&sort=inicio_programado&limit=100${filtro}`),
      api(`/api/v1/tasks?estado=finalizada,cancelada&sort=-created_at&limit=20${filtro}`),
    ]);
    tareas = operador && !efectivo ? [] : [...abiertas.data.items, ...hechas.data.items];
    saveCache();
    await unreadReleases();
    $("red").hidden = true;
  } catch (error) {
    if (error.status === undefined) showOffline();
    else $("red").textContent = error.message;
  }
  renderEfectivo();
  renderTareas();
}

// Supervisors see every efectivo: find the one linked to this usuario.
async function ownEfectivo() {
  for (let offset = 0; ; offset += 200) {
    const { data } = await api(`/api/v1/efectivos?limit=200&offset=${offset}`);
    const mine = data.items.find((e) => e.usuario_id === me);
    if (mine || offset + data.items.length >= data.total) return mine ?? null;
  }
}

function showOffline() {
  const red = $("red");
  red.hidden = false;
  red.textContent = "Sin cobertura: se muestran sus últimos datos; lo que haga se enviará al volver.";
}

async function transition(t, estado, label, motivo) {
  // Shown at once; the outbox applies it (once) when there is coverage.
  const motivoInput = document.getElementById(`motivo-${t.id}`);
  if (motivoInput) motivoInput.value = "";
  t.estado = estado;
  renderTareas();
  const result = await cola.enqueue({ method: "POST", path: `/api/v1/tasks/${t.id}/estado`, body: motivo ? { estado, motivo } : { estado }, label: `${label} ${t.codigo}` });
  if (result) load();
}

async function setDisponibilidad(estado, button) {
  if (!efectivo) return;
  efectivo.estado_disponibilidad = estado;
  renderEfectivo();
  const result = await cola.enqueue({ method: "POST", path: `/api/v1/efectivos/${efectivo.id}/disponibilidad`, body: { estado }, label: `Disponibilidad: ${button.textContent}` });
  if (result?.data) {
    efectivo = result.data;
    saveCache();
    renderEfectivo();
  }
}

function distanceM(a, b) {
  const rad = Math.PI / 180;
  const dlat = (b.lat - a.lat) * rad;
  const dlng = (b.lng - a.lng) * rad;
  const h = Math.sin(dlat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dlng / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.sqrt(h));
}

function renderPosition() {
  const sent = lastFix ? `Última posición tomada ${age(lastFix.at)}` : "Aún no se ha enviado ninguna posición desde este teléfono";
  const saw = serverSaw ? `la central la tiene de ${age(serverSaw)}` : "la central no tiene su posición";
  $("posicion-estado").textContent = `${sent}; ${saw}.`;
}

async function onFix(pos) {
  const fix = { lat: pos.coords.latitude, lng: pos.coords.longitude, at: new Date(pos.timestamp || Date.now()).toISOString() };
  if (lastFix) {
    const gap = (new Date(fix.at) - new Date(lastFix.at)) / 1000;
    if (gap < MIN_GAP_S || (gap < MAX_GAP_S && distanceM(lastFix, fix) < MIN_MOVE_M)) return;
  }
  lastFix = fix;
  renderPosition();
  if (!efectivo) return;
  const result = await cola.enqueue({
    method: "PUT",
    path: `/api/v1/efectivos/${efectivo.id}/ubicacion`,
    body: { lat: fix.lat, lng: fix.lng, registrado_en: fix.at },
    label: "Posición",
    kind: "posicion",
  });
  if (result?.data) {
    serverSaw = result.data.posicion_en;
    renderPosition();
  }
}

function setSharing(on) {
  localStorage.setItem(SHARE, on ? "si" : "no");
  $("compartir").checked = on;
  if (on && watchId === null && "geolocation" in navigator) {
    watchId = navigator.geolocation.watchPosition(onFix, (error) => ($("posicion-estado").textContent = `No se pudo obtener la posición: ${error.message}`), {
      enableHighAccuracy: true,
      maximumAge: 10000,
      timeout: 30000,
    });
  } else if (!on && watchId !== null) {
    navigator.geolocation.clearWatch(watchId);
    watchId = null;
  }
}

function currentPosition() {
  return new Promise((resolve) => {
    if (!("geolocation" in navigator)) return resolve(lastFix);
    navigator.geolocation.getCurrentPosition(
      (pos) => resolve({ lat: pos.coords.latitude, lng: pos.coords.longitude }),
      () => resolve(lastFix),
      { enableHighAccuracy: true, timeout: 8000, maximumAge: 30000 },
    );
  });
}

async function sos() {
  const out = $("sos-resultado");
  out.hidden = false;
  out.textContent = "Obteniendo su posición…";
  const where = await currentPosition();
  if (!where) {
    out.textContent = "No se conoce su posición: llame a la central.";
    return;
  }
  out.textContent = "Enviando SOS…";
  const result = await cola.enqueue({ method: "POST", path: "/api/v1/tasks/emergency", body: { lat: where.lat, lng: where.lng, descripcion: "SOS desde Mi servicio", prioridad: 5 }, label: "SOS" });
  if (!result) {
    out.textContent = "Sin cobertura: el SOS se enviará en cuanto haya red. Si puede, llame a la central.";
    return;
  }
  if (result.error) {
    out.textContent = `El SOS no se pudo lanzar: ${result.error.message}`;
    return;
  }
  const data = result.data;
  out.textContent = data.sin_asignar
    ? `SOS ${data.tarea.codigo} recibido en la central. Nadie libre cerca (${data.motivo_sin_asignar ?? "sin efectivos disponibles"}): la central le asignará ayuda.`
    : `SOS ${data.tarea.codigo}: va en camino ${data.tarea.efectivos.map((e) => e.nombre).join(", ")} (a ${data.asignados.map((a) => `${Math.round(a.distancia_m)} m`).join(", ")}).`;
}

function renderQueue() {
  const queue = cola.pending();
  const fixes = queue.filter((q) => q.kind === "posicion").length;
  const acciones = queue.length - fixes;
  $("cola-resumen").textContent = queue.length ? `${acciones} acciones y ${fixes} posiciones esperando cobertura.` : "Todo enviado.";
  $("conflictos").replaceChildren(
    ...cola.conflicts().map((c) =>
      el(
        "li",
        { class: "conflicto", "data-conflicto": c.key },
        el("strong", {}, c.label),
        `: no se aplicó — ${c.message}${c.detail && !c.message.includes(c.detail) ? ` (${c.detail})` : ""} `,
        el("button", { type: "button", onclick: () => cola.dismissConflict(c.key), "aria-label": `Entendido: ${c.label}` }, "Entendido"),
      ),
    ),
  );
}

// --- new assignment alert (acknowledgement through the notifications API when it names the notification) ---

function beep() {
  try {
    navigator.vibrate?.([200, 100, 200]);
    const audio = new AudioContext();
    const osc = audio.createOscillator();
    osc.frequency.value = 880;
    osc.connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.25);
  } catch {
    /* sound and vibration only where the browser allows them */
  }
}

function showAlert({ tareaId, notificacionId, texto }) {
  alerta = { tareaId, notificacionId };
  $("alerta-texto").textContent = texto;
  $("alerta-estado").textContent = "";
  $("alerta-motivo").value = "";
  $("alerta").hidden = false;
  $("acepto").disabled = $("no-puedo").disabled = false;
  $("acepto").focus();
  beep();
}

async function answer(respuesta) {
  if (!alerta) return;
  const motivo = $("alerta-motivo").value.trim();
  $("acepto").disabled = $("no-puedo").disabled = true;
  if (!alerta.notificacionId) {
    $("alerta-estado").textContent = respuesta === "acepto" ? "Anotado: acepta." : "Anotado: no puede. Avise a la central.";
    setTimeout(() => ($("alerta").hidden = true), 1500);
    return;
  }
  const result = await cola.enqueue({
    method: "POST",
    path: `/api/v1/notificaciones/${alerta.notificacionId}/ack`,
    body: motivo ? { respuesta, motivo } : { respuesta },
    label: respuesta === "acepto" ? "Acepto" : "No puedo",
  });
  $("alerta-estado").textContent = result?.error ? `No se registró: ${result.error.message}` : result ? "Respuesta enviada a la central." : "Sin cobertura: la respuesta se enviará al volver.";
  if (!result?.error) setTimeout(() => ($("alerta").hidden = true), 1500);
}

// --- taken off a tarea: the tarea's own events no longer reach this officer, their notification does ---

// Every release not yet acknowledged (notification id -> its text): two in a row are both shown and both marked
// read by one "Entendido"; one read elsewhere (another device, or the read replayed after a reconnection) leaves.
const desasignaciones = new Map();

function renderDesasignaciones() {
  $("desasignada-texto").textContent = [...desasignaciones.values()].join(" · ");
  $("desasignada").hidden = desasignaciones.size === 0;
}

function dropTarea(d) {
  tareas = tareas.filter((t) => t.id !== d.tarea_id);
  saveCache();
  renderTareas();
  if (alerta?.tareaId === d.tarea_id) $("alerta").hidden = true; // nothing left to accept
  if (d.estado === "leida" || desasignaciones.has(d.id)) return;
  desasignaciones.set(d.id, `${d.titulo}. ${d.texto}`);
  renderDesasignaciones();
  beep();
  load(); // availability may have changed back to disponible
}

async function unreadReleases() {
  // A release not yet acknowledged outlives a reload, and a resume that starts after its frame: the ledger says.
  const { data } = await api("/api/v1/notificaciones?causa=desasignacion&no_leidas=true&limit=50");
  for (const n of [...data.items].reverse()) if (!desasignaciones.has(n.id)) desasignaciones.set(n.id, `${n.titulo}. ${n.texto}`);
  renderDesasignaciones();
}

async function desasignacionVista() {
  const ids = [...desasignaciones.keys()];
  desasignaciones.clear();
  renderDesasignaciones();
  for (const id of ids) await cola.enqueue({ method: "POST", path: `/api/v1/notificaciones/${id}/ack`, body: { respuesta: "leida" }, label: "Aviso leído" });
}

function notificationSettled(d) {
  // Read or answered (here, on another device, or replayed after a reconnection): nothing left to ask.
  if (desasignaciones.delete(d.id)) renderDesasignaciones();
  if (alerta?.notificacionId === d.id) $("alerta").hidden = true;
}

function onFrame(frame) {
  const d = frame.data ?? {};
  if (["notification_read", "notification_answered"].includes(frame.event_type) && d.usuario_id === me) {
    notificationSettled(d);
    return;
  }
  if (frame.event_type === "notification" && d.usuario_id === me) {
    if (d.causa === "desasignacion") dropTarea(d);
    else if (d.requiere_respuesta && !d.respuesta) showAlert({ tareaId: d.tarea_id, notificacionId: d.id, texto: `${d.titulo}. ${d.texto}` });
    return;
  }
  const assignedToMe = ["task_assigned", "emergency_created"].includes(frame.event_type) && (d.asignados_usuario_ids ?? []).includes(me);
  if (assignedToMe && (!alerta || alerta.tareaId !== d.id || $("alerta").hidden)) {
    showAlert({ tareaId: d.id, notificacionId: null, texto: `${d.codigo ?? ""} ${d.titulo ?? ""}`.trim() });
  }
}

// --- start ---
const cached = loadCache();
if (cached) {
  efectivo = cached.efectivo;
  tareas = cached.tareas;
  renderEfectivo();
  renderTareas();
}
$("disponibilidad").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-estado]");
  if (button && !button.disabled) setDisponibilidad(button.dataset.estado, button);
});
$("sos").addEventListener("click", sos);
$("acepto").addEventListener("click", () => answer("acepto"));
$("no-puedo").addEventListener("click", () => answer("no_puedo"));
$("entendido").addEventListener("click", desasignacionVista);
$("compartir").addEventListener("change", (event) => setSharing(event.target.checked));
cola.onChange(renderQueue);
renderQueue();
window.addEventListener("offline", showOffline);
window.addEventListener("online", () => {
  $("red").hidden = true;
  cola.flush().then(load);
});
await load();
setSharing(localStorage.getItem(SHARE) !== "no");
cola.flush();
setInterval(() => {
  renderPosition();
  cola.flush();
}, 15000);
connectLive({
  onEvent(frame) {
    onFrame(frame);
    if (["tareas", "emergencias", "efectivos"].includes(frame.topic)) load();
  },
  onResync: load,
});
if ("serviceWorker" in navigator) navigator.serviceWorker.register(root.dataset.sw, { scope: "/mi" }).catch(() => {});
