// Tarea detail: data, history, the transitions this user may perform, assignment with suggestions, and
// editing with If-Match: a 412 shows what the other person changed and lets the operator reapply or discard.
import { api, age, clearFormErrors, el, newestOnly, readUntilDone, showFormErrors, ESTADOS } from "./api.js";
import { connectLive } from "./live.js";

const root = document.getElementById("tarea");
const id = Number(root.dataset.tareaId);
const transiciones = JSON.parse(root.dataset.transiciones);
const supervisor = root.dataset.supervisor === "si";
const me = Number(document.body.dataset.usuarioId);
const miEfectivo = Number(root.dataset.miEfectivo ?? Number.NaN);
const errorBox = document.getElementById("error");
const form = document.getElementById("form-tarea");
const EDITABLE = ["titulo", "descripcion", "tipo", "prioridad", "inicio_programado", "fin_programado", "ubicacion_lat", "ubicacion_lng", "ubicacion_descripcion", "notas"];
const LABELS = { titulo: "Título", descripcion: "Descripción", tipo: "Tipo", prioridad: "Prioridad", inicio_programado: "Inicio programado", fin_programado: "Fin programado", ubicacion_lat: "Latitud", ubicacion_lng: "Longitud", ubicacion_descripcion: "Lugar", notas: "Notas" };
let etag = null;
let current = null;
let base = null; // the tarea as it was when the form was filled: what "my changes" are measured against
let editing = false;
const touched = new Set(); // fields the operator typed in since the form was last filled
let pendingChanges = null;

function showError(error) {
  errorBox.hidden = false;
  errorBox.textContent = error.message;
}

async function act(fn) {
  errorBox.hidden = true;
  try {
    await fn();
  } catch (error) {
    showError(error);
  }
  await load();
}

// A tarea that does not exist (or was deleted) or that this usuario may not read: the page says so instead of keeping
// "Cargando…" above an empty motivo box and no buttons.
function showUnavailable(error) {
  document.getElementById("tarea-titulo").textContent = error.status === 404 ? "Esta tarea no existe" : "No puede ver esta tarea";
  for (const node of root.children) if (!["tarea-titulo", "error"].includes(node.id)) node.hidden = true;
  showError(error);
}

const asText = (v) => (v === null || v === undefined ? "" : String(v));
const INSTANTS = new Set(["inicio_programado", "fin_programado"]);
const pad = (n) => String(Math.trunc(Math.abs(n))).padStart(2, "0");
// An instant as the operator reads and types it: this browser's wall clock with its offset, to the minute
// ("2026-12-03T21:04+01:00"), not the API's UTC with microseconds. Typed back, it is what the API reads.
function localInstant(value) {
  if (!value) return "";
  const moment = new Date(value);
  const offset = -moment.getTimezoneOffset();
  const wall = new Date(moment.getTime() + offset * 60000).toISOString().slice(0, 16);
  return `${wall}${offset >= 0 ? "+" : "-"}${pad(offset / 60)}:${pad(offset % 60)}`;
}
// What the form shows for a field of the tarea, and what an untouched field is compared with.
const shown = (field, value) => (INSTANTS.has(field) ? localInstant(value) : asText(value));

// `keepTouched`: the first answer arrived after the operator began typing (the form opens before it): what they
// typed stays, and only the fields they did not touch are filled.
function fillForm(tarea, { keepTouched = false } = {}) {
  if (!form) return;
  base = tarea;
  for (const field of EDITABLE) if (!(keepTouched && touched.has(field))) form.elements.namedItem(field).value = shown(field, tarea[field]);
  if (!keepTouched) touched.clear();
  clearFormErrors(form);
}

function formChanges() {
  const changes = {};
  for (const field of EDITABLE) {
    const value = form.elements.namedItem(field).value.trim();
    if (value === shown(field, base[field])) continue;
    if (value === "") changes[field] = null;
    else if (["prioridad", "ubicacion_lat", "ubicacion_lng"].includes(field) && /^-?\d+(\.\d+)?$/.test(value.replace(",", "."))) changes[field] = Number(value.replace(",", "."));
    else changes[field] = value;
  }
  // Latitude and longitude travel together: the one not changed is sent as it was. A cleared one stays cleared
  // (null), and the server says both go together; `??=` took a cleared one for unchanged and saved nothing, silently.
  if ("ubicacion_lat" in changes || "ubicacion_lng" in changes) {
    if (!("ubicacion_lat" in changes)) changes.ubicacion_lat = base.ubicacion_lat;
    if (!("ubicacion_lng" in changes)) changes.ubicacion_lng = base.ubicacion_lng;
  }
  return changes;
}

async function save(changes, ifMatch) {
  clearFormErrors(form);
  try {
    await api(`/api/v1/tasks/${id}`, { method: "PATCH", body: changes, headers: { "If-Match": ifMatch } });
    document.getElementById("guardado").hidden = false;
    editing = false;
    document.getElementById("conflicto").hidden = true;
    errorBox.hidden = true;
    await load({ refill: true });
  } catch (error) {
    if (error.status === 412) await showConflict(changes);
    else showFormErrors(form, error);
  }
}

async function showConflict(changes) {
  const { data: latest, etag: latestEtag } = await api(`/api/v1/tasks/${id}`);
  pendingChanges = { changes, etag: latestEtag, latest };
  const rows = [];
  for (const field of EDITABLE) {
    const theirs = asText(latest[field]) !== asText(base[field]);
    const mine = field in changes;
    if (!theirs && !mine) continue;
    rows.push(
      el(
        "tr",
        { class: theirs && mine ? "choque" : "", "data-campo": field },
        el("th", { scope: "row" }, LABELS[field]),
        el("td", {}, shown(field, base[field]) || "—"),
        el("td", {}, theirs ? shown(field, latest[field]) || "—" : "(sin cambios)"),
        el("td", {}, mine ? asText(changes[field]) || "—" : "(sin cambios)"),
      ),
    );
  }
  document.getElementById("diferencias").replaceChildren(...rows);
  const panel = document.getElementById("conflicto");
  panel.hidden = false;
  document.getElementById("reaplicar").focus();
}

if (form) {
  form.addEventListener("input", (event) => {
    editing = true;
    document.getElementById("guardado").hidden = true;
    if (event.target.name) touched.add(event.target.name);
  });
  let saving = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // A second press while the first is on its way would send the same changes under the old version: a 412, shown
    // as someone else's change when it was the operator's own.
    if (saving) return;
    saving = true;
    try {
      // Saved before the tarea's first answer (a slow link): the changes are measured against it, so wait for it,
      // and read it again if that read failed.
      if (base === null) await firstLoad;
      if (base === null) await load();
      if (base === null) return; // the error box says why
      const changes = formChanges();
      if (Object.keys(changes).length === 0) return;
      await save(changes, `"${base.version}"`);
    } finally {
      saving = false;
    }
  });
  document.getElementById("reaplicar").addEventListener("click", () => {
    // Reapply only the fields I changed, on top of the other person's version.
    base = pendingChanges.latest;
    save(pendingChanges.changes, pendingChanges.etag);
  });
  document.getElementById("descartar").addEventListener("click", () => {
    editing = false;
    document.getElementById("conflicto").hidden = true;
    fillForm(pendingChanges.latest);
    form.elements.namedItem("titulo").focus();
  });
}

const begin = newestOnly();

async function load({ refill = false } = {}) {
  const superseded = begin();
  let tarea, fresh;
  try {
    ({ data: tarea, etag: fresh } = await api(`/api/v1/tasks/${id}`));
  } catch (error) {
    if (superseded()) return;
    if (current === null && (error.status === 404 || error.status === 403)) showUnavailable(error);
    else showError(error);
    return error;
  }
  if (superseded()) return; // an older answer must not bring back an older ETag: the next write would be 412
  etag = fresh;
  current = tarea;
  // While the operator edits, the form keeps their view; the header still shows the live tarea.
  if (!editing || refill) fillForm(tarea);
  else if (base === null) fillForm(tarea, { keepTouched: true });
  document.getElementById("tarea-titulo").textContent = tarea.titulo;
  document.getElementById("tarea-codigo").textContent = tarea.codigo;
  document.getElementById("tarea-estado").textContent = ESTADOS[tarea.estado];
  document.getElementById("tarea-prioridad").textContent = String(tarea.prioridad);
  document.getElementById("tarea-descripcion").textContent = tarea.descripcion ?? "";
  const motivo = () => document.getElementById("motivo").value.trim() || undefined;
  // As the server decides: a supervisor, the delegado or an assigned efectivo. An officer who raised an SOS reads its
  // tarea but its buttons would only ever be refused (403).
  const puede = supervisor || tarea.delegado_usuario_id === me || tarea.efectivos.some((e) => e.efectivo_id === miEfectivo);
  const ofrecidas = puede ? (transiciones[tarea.estado] ?? []) : [];
  for (const id of ["motivo", "motivo-label"]) document.getElementById(id).hidden = ofrecidas.length === 0;
  document.getElementById("acciones").replaceChildren(
    ...ofrecidas.map((estado) =>
      el(
        "button",
        {
          type: "button",
          "data-transicion": estado,
          onclick: () =>
            act(async () => {
              await api(`/api/v1/tasks/${id}/estado`, { method: "POST", body: { estado, motivo: motivo() }, headers: { "If-Match": etag } });
              // A motivo is the reason for this change: kept in the box, it was recorded again with every later one.
              document.getElementById("motivo").value = "";
            }),
        },
        `Pasar a ${ESTADOS[estado]}`,
      ),
    ),
  );
  document.getElementById("asignados").replaceChildren(
    ...tarea.efectivos.map((e) =>
      el("li", {}, `${e.codigo_interno} · ${e.nombre} `, supervisor ? el("button", { type: "button", "aria-label": `Quitar a ${e.nombre}`, onclick: () => act(() => api(`/api/v1/tasks/${id}/efectivos/${e.efectivo_id}`, { method: "DELETE" })) }, "Quitar") : ""),
    ),
  );
  const { data: historial } = await api(`/api/v1/tasks/${id}/historial`);
  if (superseded()) return;
  document.getElementById("historial").replaceChildren(
    ...historial.map((h) => el("li", {}, `${new Date(h.created_at).toLocaleString("es-ES")}: ${h.estado_anterior ? ESTADOS[h.estado_anterior] : "—"} → ${ESTADOS[h.estado_nuevo]}${h.motivo ? ` (${h.motivo})` : ""}`)),
  );
  const activa = ["programada", "en_curso", "pausada"].includes(tarea.estado);
  const panel = document.getElementById("asignar");
  panel.hidden = !(supervisor && activa);
  if (!panel.hidden) {
    const asignar = (efectivo, texto) =>
      el("li", {}, `${texto} `, el("button", { type: "button", "aria-label": `Asignar a ${efectivo.nombre}`, onclick: () => act(() => api(`/api/v1/tasks/${id}/efectivos`, { method: "POST", body: { efectivo_ids: [efectivo.id] } })) }, "Asignar"));
    // A tarea without a place still needs people: then the disponibles are listed by name instead of by distance.
    const situada = tarea.ubicacion_lat !== null;
    document.getElementById("asignar-titulo").textContent = situada ? "Asignar (disponibles más cercanos)" : "Asignar (disponibles; la tarea no tiene ubicación)";
    const opciones = situada
      ? (await api(`/api/v1/efectivos/cercanos?lat=${tarea.ubicacion_lat}&lng=${tarea.ubicacion_lng}&radio_m=20000&limit=5`)).data.map((c) =>
          asignar(c.efectivo, `${c.efectivo.nombre} a ${Math.round(c.distancia_m)} m (posición ${age(c.efectivo.posicion_en)})`),
        )
      : (await api("/api/v1/efectivos?estado_disponibilidad=disponible&limit=20")).data.items.map((e) => asignar(e, `${e.nombre} (${e.codigo_interno}${e.unidad ? `, ${e.unidad}` : ""})`));
    if (superseded()) return;
    document.getElementById("sugerencias").replaceChildren(...(opciones.length ? opciones : [el("li", {}, "Nadie disponible ahora.")]));
  }
}

// The first read is tried again while the link or the server fails: the page would stay "Cargando…" for good.
const firstLoad = readUntilDone(
  async () => {
    const failure = await load();
    // Judged by what the page holds: a frame's reload that failed meanwhile makes this answer an older one, dropped.
    if (current === null) throw failure ?? new Error("La tarea aún no se ha podido leer.");
  },
  (error) => {
    if (!error) errorBox.hidden = true;
  },
);
await firstLoad;
connectLive({
  onEvent(frame) {
    if ((frame.topic === "tareas" || frame.topic === "emergencias") && frame.data.id === id) load();
  },
  onResync: load,
});
