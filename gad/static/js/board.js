// Tablero: tareas in columns by estado, efectivos by availability, emergencies and a live event feed.
import { api, el, ESTADOS, DISPONIBILIDAD } from "./api.js";
import { connectLive } from "./live.js";

const tareas = new Map();
const feed = document.getElementById("feed");

function card(tarea) {
  const asignados = tarea.efectivos.map((e) => e.nombre).join(", ") || "Sin asignar";
  return el(
    "li",
    { class: `tarjeta prioridad-${tarea.prioridad}`, "data-tarea-id": String(tarea.id), "data-estado": tarea.estado },
    el("a", { href: `/tareas/${tarea.id}` }, el("span", { class: "codigo" }, tarea.codigo), " ", el("span", { class: "titulo" }, tarea.titulo)),
    el("p", { class: "meta" }, `Prioridad ${tarea.prioridad} · ${tarea.tipo}`),
    el("p", { class: "asignados" }, asignados),
  );
}

function render() {
  for (const list of document.querySelectorAll(".tarjetas")) list.replaceChildren();
  const counts = Object.fromEntries(Object.keys(ESTADOS).map((e) => [e, 0]));
  const emergencias = [];
  const sorted = [...tareas.values()].sort((a, b) => b.prioridad - a.prioridad || b.id - a.id);
  for (const tarea of sorted) {
    document.querySelector(`.tarjetas[data-estado="${tarea.estado}"]`)?.append(card(tarea));
    counts[tarea.estado] += 1;
    if (tarea.es_emergencia && ["programada", "en_curso", "pausada"].includes(tarea.estado)) emergencias.push(tarea);
  }
  for (const [estado, n] of Object.entries(counts)) {
    const counter = document.querySelector(`[data-contador="${estado}"]`);
    if (counter) counter.textContent = String(n);
  }
  const strip = document.getElementById("emergencias");
  strip.hidden = emergencias.length === 0;
  document.getElementById("lista-emergencias").replaceChildren(
    ...emergencias.map((t) => el("li", {}, el("a", { href: `/tareas/${t.id}` }, `${t.codigo} — ${t.efectivos.length ? "asignada" : "SIN ASIGNAR"}`))),
  );
}

async function loadTareas() {
  tareas.clear();
  let offset = 0;
  for (;;) {
    const { data } = await api(`/api/v1/tasks?limit=200&offset=${offset}&sort=-created_at`);
    for (const tarea of data.items) tareas.set(tarea.id, tarea);
    offset += data.items.length;
    if (offset >= data.total || data.items.length === 0) break;
  }
  render();
}

async function loadDisponibilidad() {
  try {
    const { data } = await api("/api/v1/efectivos?limit=200");
    const counts = {};
    for (const e of data.items) counts[e.estado_disponibilidad] = (counts[e.estado_disponibilidad] ?? 0) + 1;
    document.getElementById("disponibilidad").replaceChildren(
      ...Object.entries(DISPONIBILIDAD).map(([k, label]) => el("li", { "data-disponibilidad": k }, `${label}: ${counts[k] ?? 0}`)),
      // On duty = inside a turno and not on licencia (issue 17); independent of the availability above.
      el("li", { "data-en-servicio": "true", class: "en-servicio-total" }, `En servicio: ${data.items.filter((e) => e.en_servicio).length}`),
    );
  } catch {
    /* an efectivo sees only their own efectivo; the panel simply shows less */
  }
}

async function refreshTarea(id) {
  try {
    const { data } = await api(`/api/v1/tasks/${id}`);
    tareas.set(id, data);
  } catch (error) {
    if (error.status === 404 || error.status === 403) tareas.delete(id);
  }
  render();
}

function addToFeed(frame) {
  const when = new Date(frame.timestamp).toLocaleTimeString("es-ES");
  const what = frame.data.codigo ? `${frame.event_type} · ${frame.data.codigo}` : frame.event_type;
  feed.prepend(el("li", {}, `${when} — ${what}`));
  while (feed.children.length > 30) feed.lastChild.remove();
}

await Promise.all([loadTareas(), loadDisponibilidad()]);
connectLive({
  onEvent(frame) {
    addToFeed(frame);
    if (frame.topic === "tareas" || frame.topic === "emergencias") refreshTarea(frame.data.id);
    if (frame.topic === "efectivos" || frame.topic === "turnos") loadDisponibilidad();
  },
  onResync() {
    loadTareas();
    loadDisponibilidad();
  },
});
