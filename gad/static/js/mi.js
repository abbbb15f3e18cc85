// Mi servicio: the field officer's phone page. My tareas with start/pause/resume/finish, my availability in
// one tap, my position shared (throttled by time and distance), SOS, live updates with resume, and an outbox
// for everything done without coverage. The last known data is kept so the page opens offline.
import { age, api, el, fetchAll, newestOnly, ESTADOS } from "./api.js";
import * as apiModule from "./api.js";
import { connectLive } from "./live.js";
import * as cola from "./cola.js";

const root = document.getElementById("mi");
const me = Number(root.dataset.usuarioId);
const operador = root.dataset.operador === "si";
const CACHE = "gad:mi:datos";
// Per usuario: on a shared phone the next officer inherited the last one's "no compartir", and dispatch, which
// goes by where efectivos are, passed over them without anyone knowing.
const SHARE = `gad:mi:compartir:${me}`;
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
let positionRefused = null; // what the server said to the last fix it refused (renderPosition)
let tareas = [];
let lastFix = null; // {lat, lng, at} of the last fix taken (what "Última posición tomada" tells, the SOS's fallback)
let lastQueued = null; // the last fix handed to the outbox: the next goes when far or late enough from it
// Whether the page knows the officer's efectivo (read, or kept from a read): until then "no efectivo" means "not yet".
let efectivoKnown = false;
let lastLoadFailed = false; // read again by the 15 s round (a 503 at the first read left "Cargando…" for good)
let serverSaw = null;
let watchId = null;

const $ = (id) => document.getElementById(id);

// A tap lands where the finger is: when a button under it is replaced by another (the card redrawn with "Pausar"
// where "Iniciar" was, the question panel gone and the availability buttons moved up), a second tap of the same
// gesture must not act on the new one. Those buttons are disabled for a moment after such a change (drawn greyed,
// and a tap on one does nothing), then drawn again.
const SHIFT_MS = 700;
let shiftedAt = -Infinity;
const justShifted = () => performance.now() - shiftedAt < SHIFT_MS;
function shifted() {
  shiftedAt = performance.now();
  renderTareas();
  renderEfectivo();
  setTimeout(() => {
    renderTareas();
    renderEfectivo();
  }, SHIFT_MS + 20);
}

function saveCache() {
  localStorage.setItem(CACHE, JSON.stringify({ efectivo, tareas, at: new Date().toISOString() }));
}

function loadCache() {
  // The copy of a session now over (the page opened offline past its limits, perhaps in another officer's hand).
  if (cola.sessionEnded()) return null;
  try {
    const data = JSON.parse(localStorage.getItem(CACHE) ?? "null");
    if (data && data.efectivo?.usuario_id === me) return data;
  } catch {
    /* a damaged cache is ignored */
  }
  return null;
}

// What the officer did without coverage is shown as done until the outbox sends it (or reports it refused): the
// tareas copy a reload shows offline is older than the action, and offering "Iniciar" again there queued a second
// start that was then refused. The last queued change of each tarea wins, over a copy as old as the one the action
// was taken on (`base`, its version); a newer one is the server's word and wins (the supervisor's change after an
// action whose answer is still on its way). The availability's own rule is shownDisponibilidad's.
function queuedChanges() {
  const estados = new Map();
  for (const q of cola.pending()) {
    const tarea = /^\/api\/v1\/tasks\/(\d+)\/estado$/.exec(q.path ?? "");
    if (tarea) estados.set(Number(tarea[1]), q);
  }
  return { estados };
}

const notNewerThan = (row, queued) => queued.base === undefined || (row.version ?? 0) <= queued.base;

// The availability the page shows: the last one chosen and not yet sent, unless the copy says the availability changed
// since (someone else's change, or this very choice applied and then changed again while its answer was on its way).
// Judged by when the availability last changed (`base`: the copy's estado_cambiado_en at the tap), not the version:
// the officer's own position fixes bump the version, and a fix answered just after the tap hid the choice still
// waiting to be sent. (A choice queued by an older page has its version as `base`: judged by the version, as then.)
const sameInstant = (a, b) => a !== undefined && b !== undefined && Date.parse(a) === Date.parse(b);

function shownDisponibilidad() {
  if (!efectivo) return undefined;
  const path = `/api/v1/efectivos/${efectivo.id}/disponibilidad`;
  let estado = efectivo.estado_disponibilidad;
  for (const q of cola.pending()) {
    if (q.path !== path) continue;
    const applies = typeof q.base === "string" ? sameInstant(efectivo.estado_cambiado_en, q.base) : notNewerThan(efectivo, q);
    if (applies) estado = q.body.estado; // the last choice still standing wins
  }
  return estado;
}

function renderEfectivo() {
  const info = $("mi-efectivo");
  const buttons = $("disponibilidad").querySelectorAll("button");
  const estado = shownDisponibilidad();
  if (!efectivo) {
    info.textContent = cola.sessionEnded()
      ? SIN_DATOS
      : efectivoKnown
        ? "Su usuario no está vinculado a ningún efectivo: pida a su supervisor que lo vincule."
        : $("red").hidden
          ? "Cargando sus datos…"
          : "Sus datos aún no se han podido cargar: se volverá a intentar.";
    buttons.forEach((b) => (b.disabled = true));
    return;
  }
  info.textContent = `${efectivo.codigo_interno} · ${efectivo.nombre}${estado === "en_tarea" ? " · en tarea (se libera al terminarla)" : ""}`;
  buttons.forEach((b) => {
    b.disabled = estado === "en_tarea" || justShifted();
    b.setAttribute("aria-pressed", String(b.dataset.estado === estado));
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
    el("p", { class: "meta" }, `${ESTADOS[t.estado]}${t.enCola ? " (sin enviar aún)" : ""} · prioridad ${t.prioridad}${when ? ` · ${when}` : ""}`),
    t.descripcion ? el("p", {}, t.descripcion) : "",
    t.ubicacion_descripcion ? el("p", { class: "meta" }, t.ubicacion_descripcion) : "",
  );
  // Only where the server lets this usuario act (assigned, delegado, or a supervisor): an officer who raised an SOS
  // sees it here too, and its buttons would only ever be refused.
  const puede = operador || t.delegado_usuario_id === me || (efectivo && (t.efectivos ?? []).some((a) => a.efectivo_id === efectivo.id));
  const acciones = puede ? (ACCIONES[t.estado] ?? []) : [];
  if (!puede && ACCIONES[t.estado]) card.append(el("p", { class: "meta" }, "Usted dio el aviso: la central la gestiona."));
  if (acciones.length) {
    card.append(el("label", { for: motivoId }, "Motivo (opcional)"), el("input", { id: motivoId, maxLength: 500 }));
    card.append(
      el(
        "div",
        { class: "acciones" },
        ...acciones.map(([estado, label]) => el("button", { type: "button", class: "boton-grande", "data-transicion": estado, disabled: justShifted(), onclick: () => transition(t, estado, label, card.querySelector(`#${motivoId}`).value.trim()) }, label)),
      ),
    );
  }
  return card;
}

function renderTareas() {
  const { estados } = queuedChanges();
  const vistas = tareas.map((t) => {
    const queued = estados.get(t.id);
    return queued && notNewerThan(t, queued) ? { ...t, estado: queued.body.estado, enCola: true } : t;
  });
  const abiertas = vistas.filter((t) => ["programada", "en_curso", "pausada"].includes(t.estado));
  const orden = { en_curso: 0, pausada: 1, programada: 2 };
  abiertas.sort((a, b) => orden[a.estado] - orden[b.estado] || (a.inicio_programado ?? "").localeCompare(b.inicio_programado ?? ""));
  // Live updates redraw the cards: keep what the officer is typing (and where) across the redraw.
  const typed = new Map([...$("actuales").querySelectorAll("input")].map((input) => [input.id, input.value]));
  const focused = document.activeElement?.id;
  $("actuales").replaceChildren(...(abiertas.length ? abiertas.map(tareaCard) : [el("li", { class: "vacio" }, cola.sessionEnded() && !tareas.length ? SIN_DATOS : "No tiene tareas abiertas.")]));
  for (const [id, value] of typed) {
    const input = document.getElementById(id);
    if (input) input.value = value;
  }
  if (focused && $("actuales").querySelector(`#${CSS.escape(focused)}`)) document.getElementById(focused).focus();
  const hechas = vistas.filter((t) => !["programada", "en_curso", "pausada"].includes(t.estado));
  $("historial").replaceChildren(...hechas.map((t) => el("li", {}, `${t.codigo} · ${t.titulo} · ${ESTADOS[t.estado]}`)));
}

const beginLoad = newestOnly();
// Of two copies of one row, the later: versions only grow.
const newer = (kept, read) => (kept && read && kept.id === read.id && (kept.version ?? 0) > (read.version ?? 0) ? kept : read);

async function load() {
  // Every frame of a busy tarea reloads: an older answer arriving last must not put older cards back.
  const superseded = beginLoad();
  try {
    const mine = operador ? await ownEfectivo() : ((await api("/api/v1/efectivos?limit=1")).data.items[0] ?? null);
    const filtro = mine && operador ? `&efectivo_id=${mine.id}` : "";
    const [abiertas, hechas] = await Promise.all([
      api(`/api/v1/tasks?estado=programada,en_curso,pausada&sort=inicio_programado&limit=100${filtro}`),
      api(`/api/v1/tasks?estado=finalizada,cancelada&sort=-created_at&limit=20${filtro}`),
    ]);
    if (superseded()) return;
    // Read before an action's answer was adopted (a reload a position fix's frame started just before the tap): the
    // answer is newer, and putting the older copy back (and keeping it for offline) offered the action again.
    efectivo = newer(efectivo, mine);
    efectivoKnown = true;
    // A fix taken before the efectivo was known (the first read slow or failed) waited for it.
    if (efectivo && lastFix && lastFix !== lastQueued && watchId !== null && !cola.sessionEnded()) sendFix(lastFix);
    const adopted = new Map(tareas.map((t) => [t.id, t]));
    tareas = operador && !efectivo ? [] : [...abiertas.data.items, ...hechas.data.items].map((t) => newer(adopted.get(t.id), t));
    saveCache();
    await Promise.all([unreadReleases(), pendingQuestions()]);
    $("red").hidden = true;
    lastLoadFailed = false;
  } catch (error) {
    if (superseded()) return;
    lastLoadFailed = true;
    if (error.status === undefined) showOffline();
    else if (error.status >= 500 || error.status === 429) {
      $("red").hidden = false;
      $("red").textContent = "No se pudieron cargar sus datos: se vuelve a intentar.";
    } else $("red").textContent = error.message;
  }
  renderEfectivo();
  renderTareas();
}

// The service worker refreshes the shell's files one by one: a phone may hold this mi.js beside an api.js cached
// before `pages` existed, and a named import of it would stop /mi from loading at all (offline, until both match).
const pagesOf = apiModule.pages ?? async function* (path) { yield (await fetchAll(path)).items; };

// Supervisors see every efectivo: find the one linked to this usuario.
async function ownEfectivo() {
  for await (const items of pagesOf("/api/v1/efectivos")) {
    const mine = items.find((e) => e.usuario_id === me);
    if (mine) return mine;
  }
  return null;
}

// The server no longer knows this session (idle too long, ended from another device): nothing queued can be sent
// until the officer logs in again, which must not read as a coverage problem.
function renderSession() {
  const aviso = $("sesion");
  aviso.hidden = !cola.sessionEnded();
  if (cola.sessionEnded()) {
    const pendientes = cola.pending().filter((q) => q.kind !== "posicion").length;
    $("sesion-texto").textContent = pendientes
      ? `Su sesión ha caducado: ${pendientes === 1 ? "1 acción espera" : `${pendientes} acciones esperan`} a que vuelva a entrar.`
      : "Su sesión ha caducado: vuelva a entrar para seguir recibiendo avisos.";
  }
}

const SIN_DATOS = "Sesión caducada: sus datos no se muestran hasta que vuelva a entrar.";

// Actions another usuario left waiting on this phone (their session ended first): they go when that usuario logs in
// again, never in this one's name; said, so that "Todo enviado" here does not read as "nothing is waiting".
function renderAjenas() {
  const hora = (iso) => new Date(iso).toLocaleTimeString("es-ES", { hour: "2-digit", minute: "2-digit" });
  const avisos = cola.othersWaiting?.() ?? [];
  $("ajenas").hidden = avisos.length === 0;
  $("ajenas").textContent = avisos
    .map(({ nombre, sos, acciones }) => {
      const quien = nombre ? `la sesión de ${nombre}` : "otra sesión";
      const que = [sos.length ? `${sos.length === 1 ? "un SOS pulsado" : `${sos.length} SOS pulsados`} a las ${sos.map(hora).join(", ")}` : "", acciones ? `${acciones === 1 ? "1 acción" : `${acciones} acciones`}` : ""]
        .filter(Boolean)
        .join(" y ");
      return `En este teléfono espera${sos.length + acciones > 1 ? "n" : ""} sin enviar ${que} de ${quien}: se enviará${sos.length + acciones > 1 ? "n" : ""} cuando esa persona vuelva a entrar, nunca a nombre de quien use ahora el teléfono.${sos.length ? " Si alguien necesita ayuda, llame a la central." : ""}`;
    })
    .join(" ");
}

function showOffline() {
  const red = $("red");
  red.hidden = false;
  // With nothing kept (a first visit, or a session that ended), there are no "últimos datos" to speak of.
  red.textContent = efectivoKnown
    ? "Sin cobertura: se muestran sus últimos datos; lo que haga se enviará al volver."
    : "Sin cobertura: lo que haga se enviará al volver.";
}

async function transition(t, estado, label, motivo) {
  if (justShifted()) return;
  // Shown at once; the outbox applies it (once) when there is coverage.
  const motivoInput = document.getElementById(`motivo-${t.id}`);
  if (motivoInput) motivoInput.value = "";
  // enqueue stores the action before its first await, so the redraw right after already shows it done.
  // Pressed without coverage, it waits in the outbox: it carries the moment it was pressed (timed at its arrival, a
  // patrol done offline lasted, for the reports, the instant between two requests). Pressed online it carries none,
  // and the server's clock stands (a phone's clock running minutes off would otherwise date it).
  const body = { estado, ...(motivo ? { motivo } : {}), ...(navigator.onLine ? {} : { ocurrido_en: new Date().toISOString() }) };
  const sending = cola.enqueue({ method: "POST", path: `/api/v1/tasks/${t.id}/estado`, body, label: `${label} ${t.codigo}`, base: t.version });
  shifted();
  const result = await sending;
  adopt(result);
  if (result) load();
}

// A tarea as the server answered an action on it is kept (and drawn) at once: once the action leaves the outbox, the
// card must not go back to what it was while the reload is on its way, nor stay so when coverage goes before it lands.
function adopt(answer) {
  const row = answer?.data;
  const i = row && "codigo" in row && "estado" in row ? tareas.findIndex((t) => t.id === row.id) : -1;
  if (i < 0 || row.version < (tareas[i].version ?? 0)) return;
  tareas[i] = row;
  saveCache();
  renderTareas();
}

async function setDisponibilidad(estado, button) {
  if (!efectivo || justShifted()) return;
  // enqueue stores the action before its first await, so the redraw right after already shows it (as queued).
  const sending = cola.enqueue({
    method: "POST",
    path: `/api/v1/efectivos/${efectivo.id}/disponibilidad`,
    // What the officer chose it from: sent later (no coverage), it is refused if the central changed it meanwhile.
    body: { estado, desde: shownDisponibilidad() },
    label: `Disponibilidad: ${button.textContent}`,
    base: efectivo.estado_cambiado_en,
  });
  renderEfectivo();
  const result = await sending;
  // The answer may come back after a newer change (the supervisor's, shown by its frame's reload): versions only grow.
  if (result?.data && result.data.version >= (efectivo?.version ?? 0)) {
    efectivo = result.data;
    saveCache();
  }
  renderEfectivo(); // sent, or kept
  // Refused: the availability changed without this page hearing it (the refusal says to what): read it again.
  if (result?.error) load();
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
  const saw = positionRefused
    ? `la central no la acepta: ${positionRefused}`
    : serverSaw
      ? `la central la tiene de ${age(serverSaw)}`
      : "la central no tiene su posición";
  $("posicion-estado").textContent = `${sent}; ${saw}`.replace(/\.?$/, ".");
}
// The last answer to a fix the outbox sent: a refusal (the efectivo dado de baja) is said here, not as a conflict.
cola.onSent?.((item, result) => {
  if (item.kind !== "posicion") return;
  positionRefused = result?.error ? (result.error.problem?.mensaje ?? result.error.message) : null;
  renderPosition();
});

async function onFix(pos) {
  const fix = { lat: pos.coords.latitude, lng: pos.coords.longitude, at: new Date(pos.timestamp || Date.now()).toISOString() };
  if (lastQueued) {
    const gap = (new Date(fix.at) - new Date(lastQueued.at)) / 1000;
    if (gap < MIN_GAP_S || (gap < MAX_GAP_S && distanceM(lastQueued, fix) < MIN_MOVE_M)) return;
  }
  lastFix = fix;
  renderPosition();
  // Past the session's end the phone may be in another officer's hand: their route is not kept as this usuario's.
  // Before the efectivo is known the fix waits in lastFix (load sends it), rather than counting as sent.
  if (!efectivo || cola.sessionEnded()) return;
  await sendFix(fix);
}

async function sendFix(fix) {
  lastQueued = fix;
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
    watchId = navigator.geolocation.watchPosition(onFix, (error) => ($("posicion-estado").textContent = `No se pudo obtener la posición: ${GEO_ERRORES[error.code] ?? "el teléfono no la dio"}.`), {
      enableHighAccuracy: true,
      maximumAge: 10000,
      timeout: 30000,
    });
  } else if (!on && watchId !== null) {
    navigator.geolocation.clearWatch(watchId);
    watchId = null;
  }
}

// The browser's own messages are English ("User denied Geolocation"); its codes are standard (GeolocationPositionError).
const GEO_ERRORES = {
  1: "el permiso de ubicación está denegado para esta página (actívelo en los ajustes del navegador)",
  2: "el teléfono no consigue situarse ahora",
  3: "el teléfono tardó demasiado en situarse",
};

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

// The page cannot tell who holds the phone: the usuario it was drawn for logging in again sends it at once, anyone
// else must not wait for it.
const titular = root.dataset.usuarioNombre ?? "quien abrió esta página";
const SOS_SIN_SESION = `Su sesión ha caducado: el SOS NO se ha enviado. Llame a la central. Queda guardado a nombre de ${titular} y se enviará cuando ${titular} vuelva a entrar.`;
let sosEnCurso = false;

async function sos() {
  // One emergency per press, however often the button is hit: a second tap while the first is on its way, or
  // while it waits in the outbox, would raise a second emergency and send a second officer.
  if (sosEnCurso) return;
  const out = $("sos-resultado");
  out.hidden = false;
  if (cola.pending().some((q) => q.kind === "sos")) {
    out.textContent = cola.sessionEnded() ? SOS_SIN_SESION : "Su SOS ya espera cobertura y se enviará en cuanto haya red. Si puede, llame a la central.";
    cola.flush();
    return;
  }
  sosEnCurso = true;
  $("sos").disabled = true;
  try {
    await raiseSos(out);
  } finally {
    sosEnCurso = false;
    $("sos").disabled = false;
  }
}

async function raiseSos(out) {
  out.textContent = "Obteniendo su posición…";
  const where = await currentPosition();
  // Without a fix the SOS still goes: the central places it at the last position it has of this officer (or, with
  // none, raises it without one and calls). Help asked for must never wait for the GPS.
  out.textContent = where ? "Enviando SOS…" : "Sin posición en el teléfono: enviando el SOS con la última que tiene la central…";
  const body = { ...(where ? { lat: where.lat, lng: where.lng } : {}), descripcion: "SOS desde Mi servicio", prioridad: 5 };
  const result = await cola.enqueue({ method: "POST", path: "/api/v1/tasks/emergency", body, label: "SOS", kind: "sos" });
  if (!result) out.textContent = cola.sessionEnded() ? SOS_SIN_SESION : "Sin cobertura: el SOS se enviará en cuanto haya red. Si puede, llame a la central.";
  // Sent or refused: said by showSos (cola.onSent), here as when the outbox sends it later.
}

// What became of an SOS, whenever the outbox sent it: at the tap, or later in the background (coverage back, after
// logging in again), when the screen otherwise still said "Sin cobertura" and never who was coming.
function showSos(result) {
  const out = $("sos-resultado");
  out.hidden = false;
  if (result.error) {
    out.textContent = `El SOS no se pudo lanzar: ${result.error.message}`;
    return;
  }
  const data = result.data;
  if (!data) return; // an answer without a body (not the API's): nothing to tell of it
  if (data.tarea.ubicacion_lat === null) {
    out.textContent = `SOS ${data.tarea.codigo} recibido en la central, pero sin su posición: le llamarán. Si puede, llame usted a la central.`;
    return;
  }
  out.textContent = data.sin_asignar
    ? `SOS ${data.tarea.codigo} recibido en la central. Nadie libre cerca (${data.motivo_sin_asignar ?? "sin efectivos disponibles"}): la central le asignará ayuda.`
    : `SOS ${data.tarea.codigo}: va en camino ${data.tarea.efectivos.map((e) => e.nombre).join(", ")} (a ${data.asignados.map((a) => `${Math.round(a.distancia_m)} m`).join(", ")}).`;
}
cola.onSent?.((item, result) => item.kind === "sos" && result && showSos(result)); // ?.: a cola.js cached before onSent
// Applied: what is queued after it on the same tarea, or the availability, was taken on its answer (`base`).
cola.onSent?.((item, result) => {
  const row = result?.data;
  if (!row) return;
  if (typeof item.base === "string" && row.estado_cambiado_en) cola.rebase?.(item.path, row.estado_cambiado_en);
  else if (typeof item.base === "number" && typeof row.version === "number") cola.rebase?.(item.path, row.version);
});

function renderQueue() {
  renderSession();
  const queue = cola.pending();
  const fixes = queue.filter((q) => q.kind === "posicion").length;
  const acciones = queue.length - fixes;
  const contadas = (n, una, varias) => `${n} ${n === 1 ? una : varias}`;
  $("cola-resumen").textContent = queue.length ? `${contadas(acciones, "acción", "acciones")} y ${contadas(fixes, "posición", "posiciones")} esperando cobertura.` : "Todo enviado.";
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
    // Before the first tap the browser blocks vibration and says so in the console as an error.
    if (navigator.userActivation?.hasBeenActive !== false) navigator.vibrate?.([200, 100, 200]);
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

// Every question not yet answered, by key: the notification's id, or `t<tareaId>` for a task_assigned frame
// seen before its notification is known (it yields to the notification, which names what to answer). One is
// shown at a time; the next after the answer is sent or queued, so two assignments in a row are both asked.
const preguntas = new Map();
// Notification ids answered or read here or settled elsewhere (answered, read, released): a late frame or a ledger read
// that started before the answer never asks them again.
const cerradas = new Set();
let alerta = null; // the pregunta on screen
let respondiendo = false; // the answer's outcome is on screen; the next question waits for it

// Emergencies first (someone may be in danger and their deadline is the shortest), then the most urgent
// prioridad, then the oldest: of equal urgency it is the nearest to escalating to the supervisors.
const masUrgente = (a, b) => (b.causa === "emergencia") - (a.causa === "emergencia") || b.prioridad - a.prioridad || a.orden - b.orden;

function ask(n) {
  if (n.notificacionId) {
    if (cerradas.has(n.notificacionId) || preguntas.has(n.notificacionId)) return;
    const asked = preguntas.get(`t${n.tareaId}`);
    preguntas.delete(`t${n.tareaId}`);
    preguntas.set(n.notificacionId, { ...n, key: n.notificacionId, orden: n.notificacionId, desde: performance.now(), avisada: asked?.avisada });
  } else {
    // The frame announcing the assignment comes before its notification; once that is known, no placeholder.
    if ([...preguntas.values()].some((p) => p.tareaId === n.tareaId)) return;
    preguntas.set(`t${n.tareaId}`, { ...n, key: `t${n.tareaId}`, orden: Number.MAX_SAFE_INTEGER, desde: performance.now() });
  }
  showNext();
}

function fromNotification(n) {
  const tarde = n.escalada_en ? " (sin respuesta a tiempo: la central ya fue avisada; conteste igualmente)" : "";
  return { tareaId: n.tarea_id, notificacionId: n.id, causa: n.causa, prioridad: n.prioridad, texto: `${n.titulo}. ${n.texto}${tarde}` };
}

function forget(key) {
  const p = preguntas.get(key);
  if (!p) return;
  preguntas.delete(key);
  if (p.notificacionId) cerradas.add(p.notificacionId);
  if (alerta?.key === key && !respondiendo) {
    alerta = null;
    showNext();
  }
}

// What the question is, said first: an evacuation asked under "Nueva asignación" reads as a routine task.
const PREGUNTA_TITULOS = { asignacion: "Nueva asignación", emergencia: "Emergencia: se le asigna", alerta: "Alerta de la central" };

function showNext() {
  if (respondiendo) return;
  const orden = [...preguntas.values()].sort(masUrgente);
  // The question on screen stays until it is answered or settled (perhaps asked by its task_assigned frame, now
  // named by its notification): a more urgent one waits first in line rather than take its place under the
  // officer's thumb, with the reason they were typing, and receive the answer meant for the other.
  const onScreen = alerta && !$("alerta").hidden ? orden.find((p) => p.key === alerta.key || (alerta.notificacionId === null && p.tareaId === alerta.tareaId)) : undefined;
  const next = onScreen ?? orden[0];
  $("alerta-cola").textContent = orden.length > 1 ? `Después: ${orden.length - 1} pregunta(s) más.` : "";
  if (!next) {
    alerta = null;
    $("alerta").hidden = true;
    return;
  }
  if (onScreen) {
    alerta = next;
    $("alerta-texto").textContent = next.texto;
    return;
  }
  const nueva = !next.avisada;
  next.avisada = true;
  alerta = next;
  $("alerta-titulo").textContent = PREGUNTA_TITULOS[next.causa] ?? PREGUNTA_TITULOS.asignacion;
  $("alerta-texto").textContent = next.texto;
  $("alerta-estado").textContent = "";
  $("alerta-motivo").value = "";
  $("alerta").hidden = false;
  $("acepto").disabled = $("no-puedo").disabled = false;
  $("acepto").focus();
  if (nueva) beep();
}

// Acks waiting in the outbox (sent when coverage returns), answers or "leida": the ledger still lists them.
function acksQueued(answered) {
  return new Set([...cola.queuedAnswers()].filter(([, respuesta]) => (respuesta !== "leida") === answered).map(([id]) => id));
}

async function pendingQuestions() {
  // The ledger, not the stream, says what is still asked: a question outlives a reload, the phone reopening the
  // page, and a resume that starts after its frame; one settled meanwhile (answered on another device, its
  // assignment released, the tarea ended) is no longer listed and leaves.
  const desde = performance.now();
  // Every one, page after page: one left out would neither be asked nor, when it came from a frame, be kept.
  const { items } = await fetchAll("/api/v1/notificaciones?pendientes=true");
  const queued = acksQueued(true);
  const listed = new Set(items.map((n) => n.id));
  for (const [key, p] of preguntas) if (p.desde < desde && !listed.has(p.notificacionId)) forget(key);
  for (const n of items) if (!queued.has(n.id)) ask(fromNotification(n));
  showNext();
}

// A replayed question is checked against the ledger, read after the replay's events committed, rather than
// asked: it may have been answered or released since, and its settling frame would only come after it.
let rereading = null;
function reread() {
  rereading ??= new Promise((resolve) => setTimeout(resolve, 50))
    .then(pendingQuestions)
    .catch(() => {}) // without coverage the next load asks again
    .finally(() => (rereading = null));
}

async function answer(respuesta) {
  if (!alerta || respondiendo) return;
  const p = alerta;
  const motivo = $("alerta-motivo").value.trim();
  respondiendo = true;
  preguntas.delete(p.key);
  $("acepto").disabled = $("no-puedo").disabled = true;
  let id = p.notificacionId;
  let estado = "Esta asignación ya no espera respuesta.";
  let refused = false;
  if (!id) {
    // Answered before its notification arrived: the ledger names it (none listed: answered or released elsewhere).
    try {
      id = (await api(`/api/v1/notificaciones?pendientes=true&tarea_id=${p.tareaId}&limit=1`)).data.items[0]?.id ?? null;
    } catch {
      estado = "Sin cobertura: se le volverá a preguntar cuando vuelva la red.";
    }
  }
  if (id) {
    cerradas.add(id);
    preguntas.delete(id);
    const result = await cola.enqueue({
      method: "POST",
      path: `/api/v1/notificaciones/${id}/ack`,
      body: motivo ? { respuesta, motivo } : { respuesta },
      // Which tarea, should it be refused: its codigo, as "Iniciar T-0042" says, or the question's own words.
      label: `${respuesta === "acepto" ? "Acepto" : "No puedo"} ${tareas.find((t) => t.id === p.tareaId)?.codigo ?? p.texto ?? ""}`.trim(),
    });
    refused = Boolean(result?.error);
    estado = result?.error
      ? `No se registró: ${result.error.message}`
      : result
        ? "Respuesta enviada a la central."
        : cola.sessionEnded()
          ? "Su sesión ha caducado: la respuesta se enviará cuando vuelva a entrar."
          : "Sin cobertura: la respuesta se enviará al volver.";
    // "No puedo" takes the officer off the tarea, and its own frames no longer reach them: the card goes by a reload.
    if (result?.data && respuesta === "no_puedo") load();
  }
  showOutcome(estado, refused ? 4000 : 1500); // a refusal stays to be read (and is listed under "Pendiente de enviar")
}

// The question on screen has its outcome written under it; the next one takes its place only once it was read.
function showOutcome(estado, ms) {
  $("alerta-estado").textContent = estado;
  setTimeout(() => {
    respondiendo = false;
    alerta = null;
    $("alerta").hidden = true;
    shifted(); // what was below the panel moved up under the finger
    showNext();
  }, ms);
}

function withdrawn(d) {
  // Its alert was closed: an answer would now be refused. A question on screen says so before it goes, and its
  // buttons stop taking taps; one still waiting in line simply leaves.
  cerradas.add(d.id);
  if (alerta?.notificacionId !== d.id || respondiendo || $("alerta").hidden) {
    forget(d.id);
    return;
  }
  preguntas.delete(d.id);
  respondiendo = true;
  $("acepto").disabled = $("no-puedo").disabled = true;
  showOutcome("La central cerró esta alerta: ya no espera respuesta.", 4000);
}

// --- taken off a tarea: the tarea's own events no longer reach this officer, their notification does ---

// Every release not yet acknowledged (notification id -> its text): two in a row are both shown and both marked
// read by one "Entendido"; one read elsewhere (another device, or the read replayed after a reconnection) leaves.
const desasignaciones = new Map();

function renderDesasignaciones() {
  // A heading true of every notice under it: the one to a tarea's delegado says they keep the tarea ("sigue siendo
  // su delegado"), and nothing in the notification but its text tells the two kinds apart.
  $("desasignada-titulo").textContent = desasignaciones.size > 1 ? `${desasignaciones.size} asignaciones retiradas` : "Asignación retirada";
  $("desasignada-texto").textContent = [...desasignaciones.values()].map((r) => r.texto).join(" · ");
  $("desasignada").hidden = desasignaciones.size === 0;
}

function dropTarea(d) {
  tareas = tareas.filter((t) => t.id !== d.tarea_id);
  saveCache();
  renderTareas();
  // Nothing left to accept, but only of what came before this release: a resume replays it after the phone has
  // already been asked, from the ledger, about the tarea assigned to it again since (a newer notification).
  for (const [key, p] of preguntas) if (p.tareaId === d.tarea_id && (p.notificacionId ?? 0) < d.id) forget(key);
  if (d.estado === "leida" || acksQueued(false).has(d.id)) cerradas.add(d.id); // read, or its "Entendido" waits to be sent
  if (cerradas.has(d.id) || desasignaciones.has(d.id)) return;
  desasignaciones.set(d.id, { texto: `${d.titulo}. ${d.texto}`, desde: performance.now() });
  renderDesasignaciones();
  beep();
  load(); // availability may have changed back to disponible
}

async function unreadReleases() {
  // A release not yet acknowledged outlives a reload, and a resume that starts after its frame: the ledger says.
  // One read while this request was on its way (its frame came first) is not put back by the older answer, and
  // one read elsewhere whose frame this page missed leaves, as questions do, for good: a read notice stays read,
  // and an older ledger read (two loads in flight) answered after this one would otherwise show it again.
  const desde = performance.now();
  const { items } = await fetchAll("/api/v1/notificaciones?causa=desasignacion&no_leidas=true");
  const listed = new Set(items.map((n) => n.id));
  // "Entendido" before a reload, its ack still in the outbox: not shown again. Only the notices listed here: a question
  // marked read in the tray has a "leida" waiting too, and is still asked (among `cerradas`, it never was again).
  for (const id of acksQueued(false)) if (listed.has(id)) cerradas.add(id);
  for (const [id, r] of desasignaciones) {
    if (r.desde < desde && !listed.has(id)) {
      desasignaciones.delete(id);
      cerradas.add(id);
    }
  }
  for (const n of [...items].reverse()) {
    if (!cerradas.has(n.id) && !desasignaciones.has(n.id)) desasignaciones.set(n.id, { texto: `${n.titulo}. ${n.texto}`, desde });
  }
  renderDesasignaciones();
}

async function desasignacionVista() {
  const ids = [...desasignaciones.keys()];
  for (const id of ids) cerradas.add(id);
  desasignaciones.clear();
  renderDesasignaciones();
  // All queued at once (each enqueue stores its ack before it tries to send): one at a time, a reload while the
  // first could not be sent left the others unqueued, and their notices came back.
  await Promise.all(ids.map((id) => cola.enqueue({ method: "POST", path: `/api/v1/notificaciones/${id}/ack`, body: { respuesta: "leida" }, label: "Aviso leído" })));
}

function notificationSettled(d) {
  // Read or answered (here, on another device, or replayed after a reconnection): nothing left to tell. A question
  // marked read (the tray's "Marcar leída") is not answered: it still waits for acepto / no puedo, and is still asked.
  if (desasignaciones.delete(d.id)) renderDesasignaciones();
  if (d.requiere_respuesta && !d.respuesta) return;
  cerradas.add(d.id);
  forget(d.id);
}

function onFrame(frame, replayed) {
  const d = frame.data ?? {};
  if (["notification_read", "notification_answered"].includes(frame.event_type) && d.usuario_id === me) {
    notificationSettled(d);
    return;
  }
  if (frame.event_type === "notification_withdrawn" && d.usuario_id === me) {
    withdrawn(d);
    return;
  }
  if (frame.event_type === "notification" && d.usuario_id === me) {
    if (d.causa === "desasignacion") dropTarea(d);
    else if (d.requiere_respuesta && !d.respuesta) replayed ? reread() : ask(fromNotification(d));
    return;
  }
  // task_assigned lists everyone on the tarea: only the efectivos it names were just assigned.
  const newlyMine = frame.event_type === "emergency_created" || !efectivo || (d.efectivo_ids ?? []).includes(efectivo.id);
  if (!replayed && ["task_assigned", "emergency_created"].includes(frame.event_type) && (d.asignados_usuario_ids ?? []).includes(me) && newlyMine) {
    const causa = frame.event_type === "emergency_created" || d.es_emergencia ? "emergencia" : "asignacion";
    ask({ tareaId: d.id, notificacionId: null, causa, prioridad: d.prioridad ?? 3, texto: `${d.codigo ?? ""} ${d.titulo ?? ""}`.trim() });
  }
}

// --- start ---
const cached = loadCache();
if (cached) {
  efectivo = cached.efectivo;
  efectivoKnown = true;
  tareas = cached.tareas;
  renderEfectivo();
  renderTareas();
} else {
  renderEfectivo(); // "Cargando sus datos…", its buttons disabled until the efectivo is read
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
// An answer queued elsewhere on the page (the tray, bandeja.js) settles its question here too: asked on, it would
// take a second, perhaps different, answer for the same notification.
// Closed as well as forgotten: answered in the tray before this panel held the question (the ledger read still on its
// way), it was asked again when that read arrived.
cola.onChange(() =>
  acksQueued(true).forEach((id) => {
    cerradas.add(id);
    forget(id);
  }),
);
cola.nameOwner?.(root.dataset.usuarioNombre);
renderQueue();
renderAjenas();
window.addEventListener("gad:session-ended", (event) => {
  // Whoever holds the phone now may not be the officer (a page left open past its limits, the service worker's copy
  // of the last one's page, a tab of theirs beside the next one's): nothing of theirs stays on screen, and no question
  // of theirs can be answered in their name. (What the SOS button just said stays: it is said to whoever pressed it.)
  efectivo = null;
  efectivoKnown = false;
  tareas = [];
  preguntas.clear();
  desasignaciones.clear();
  renderEfectivo();
  renderTareas();
  renderDesasignaciones();
  if (!respondiendo) showNext();
  // The server said so (not judged offline, where the copy is all the officer has): the service worker's copy of this
  // page, drawn for a session now over, is not opened again without coverage by whoever holds the phone next.
  if (!event.detail?.lapsed) cola.dropKeptPage?.(me);
  renderQueue();
});
// Judged over without coverage, and the server has answered since: the session stood after all.
window.addEventListener("gad:session-resumed", () => {
  renderQueue();
  load();
});
window.addEventListener("offline", showOffline);
window.addEventListener("online", () => {
  $("red").hidden = true;
  flushThenLoad(true);
});
// What the outbox sends in the background is shown from the server's answer once it is sent (until then, as queued),
// and then from a reload; coming back online reloads in any case (what happened meanwhile was not heard).
const flushThenLoad = (always = false) =>
  cola.flush().then((sent) => {
    sent.forEach(adopt);
    if (always || sent.size) load();
  });
// The outbox, the position and the live socket start once the first read is in, or after a few seconds without it:
// on a link that hangs they waited for it (the reads themselves have no time limit: a slow answer is still worth it).
await Promise.race([load(), new Promise((resolve) => setTimeout(resolve, 5000))]);
// The one choice kept for the whole phone before it was per usuario: whose it was is not known, so it is not followed.
localStorage.removeItem("gad:mi:compartir");
setSharing(localStorage.getItem(SHARE) !== "no");
flushThenLoad();
setInterval(() => {
  cola.sessionEnded(); // a page left open past its session's limits without coverage ends it (the listener above)
  renderPosition();
  flushThenLoad(lastLoadFailed && !cola.sessionEnded());
}, 15000);
connectLive({
  onEvent(frame, { replayed }) {
    onFrame(frame, replayed);
    if (["tareas", "emergencias", "efectivos"].includes(frame.topic)) load();
  },
  onResync: load,
});
if ("serviceWorker" in navigator) navigator.serviceWorker.register(root.dataset.sw, { scope: "/mi" }).catch(() => {});
