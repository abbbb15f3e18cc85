// Tarea detail: data, history, the transitions this user may perform, and assignment with suggestions.
import { api, el, ESTADOS } from "./api.js";
import { connectLive } from "./live.js";

const root = document.getElementById("tarea");
const id = Number(root.dataset.tareaId);
const transiciones = JSON.parse(root.dataset.transiciones);
const supervisor = root.dataset.supervisor === "si";
const errorBox = document.getElementById("error");
let etag = null;

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

async function load() {
  let tarea;
  try {
    ({ data: tarea, etag } = await api(`/api/v1/tasks/${id}`));
  } catch (error) {
    showError(error);
    return;
  }
  document.getElementById("tarea-titulo").textContent = tarea.titulo;
  document.getElementById("tarea-codigo").textContent = tarea.codigo;
  document.getElementById("tarea-estado").textContent = ESTADOS[tarea.estado];
  document.getElementById("tarea-prioridad").textContent = String(tarea.prioridad);
  document.getElementById("tarea-descripcion").textContent = tarea.descripcion ?? "";
  document.getElementById("acciones").replaceChildren(
    ...(transiciones[tarea.estado] ?? []).map((estado) =>
      el("button", { type: "button", "data-transicion": estado, onclick: () => act(() => api(`/api/v1/tasks/${id}/estado`, { method: "POST", body: { estado }, headers: { "If-Match": etag } })) }, `Pasar a ${ESTADOS[estado]}`),
    ),
  );
  document.getElementById("asignados").replaceChildren(
    ...tarea.efectivos.map((e) =>
      el("li", {}, `${e.codigo_interno} · ${e.nombre} `, supervisor ? el("button", { type: "button", onclick: () => act(() => api(`/api/v1/tasks/${id}/efectivos/${e.efectivo_id}`, { method: "DELETE" })) }, "Quitar") : ""),
    ),
  );
  const { data: historial } = await api(`/api/v1/tasks/${id}/historial`);
  document.getElementById("historial").replaceChildren(
    ...historial.map((h) => el("li", {}, `${new Date(h.created_at).toLocaleString("es-ES")}: ${h.estado_anterior ? ESTADOS[h.estado_anterior] : "—"} → ${ESTADOS[h.estado_nuevo]}${h.motivo ? ` (${h.motivo})` : ""}`)),
  );
  const activa = ["programada", "en_curso", "pausada"].includes(tarea.estado);
  const panel = document.getElementById("asignar");
  panel.hidden = !(supervisor && activa && tarea.ubicacion_lat !== null);
  if (!panel.hidden) {
    const { data: cercanos } = await api(`/api/v1/efectivos/cercanos?lat=${tarea.ubicacion_lat}&lng=${tarea.ubicacion_lng}&radio_m=20000&limit=5`);
    document.getElementById("sugerencias").replaceChildren(
      ...cercanos.map((c) =>
        el("li", {}, `${c.efectivo.nombre} a ${Math.round(c.distancia_m)} m `, el("button", { type: "button", onclick: () => act(() => api(`/api/v1/tasks/${id}/efectivos`, { method: "POST", body: { efectivo_ids: [c.efectivo.id] } })) }, "Asignar")),
      ),
    );
  }
}

await load();
connectLive({
  onEvent(frame) {
    if ((frame.topic === "tareas" || frame.topic === "emergencias") && frame.data.id === id) load();
  },
  onResync: load,
});
