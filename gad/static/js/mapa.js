// Map of efectivos and located tareas. Works without tiles: markers and the list below still render.
import { api, el } from "./api.js";

const container = document.getElementById("mapa");
const map = window.L.map(container).setView([40.4169, -3.7035], 12);
window.L.tileLayer(container.dataset.tiles, { maxZoom: 19, attribution: "© OpenStreetMap" }).addTo(map);
const lista = document.getElementById("posiciones");

const { data: efectivos } = await api("/api/v1/efectivos?limit=200");
for (const e of efectivos.items.filter((x) => x.lat !== null)) {
  window.L.circleMarker([e.lat, e.lng], { radius: 7, color: e.estado_disponibilidad === "disponible" ? "#15803d" : "#b45309" }).addTo(map).bindTooltip(e.nombre);
  lista.append(el("li", {}, `Efectivo ${e.nombre}: ${e.lat.toFixed(4)}, ${e.lng.toFixed(4)}`));
}
const { data: tareas } = await api("/api/v1/tasks?limit=200&estado=programada,en_curso,pausada");
for (const t of tareas.items.filter((x) => x.ubicacion_lat !== null)) {
  window.L.marker([t.ubicacion_lat, t.ubicacion_lng]).addTo(map).bindTooltip(t.codigo);
  lista.append(el("li", {}, `Tarea ${t.codigo}: ${t.ubicacion_lat.toFixed(4)}, ${t.ubicacion_lng.toFixed(4)}`));
}
