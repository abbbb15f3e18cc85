// Map page: efectivos (position age in the tooltip and the list) and located open tareas; works without tiles.
import { age, coalesced, el, fetchAll, newestOnly, readUntilDone, sayReadFailure } from "./api.js";
import { createMap } from "./mapview.js";
import { connectLive } from "./live.js";

const view = createMap(document.getElementById("mapa"));
const lista = document.getElementById("posiciones");

const begin = newestOnly();

async function load() {
  const superseded = begin();
  const [{ items: efectivos }, { items: tareas }] = await Promise.all([fetchAll("/api/v1/efectivos?"), fetchAll("/api/v1/tasks?estado=programada,en_curso,pausada")]);
  if (superseded()) return;
  view.showEfectivos(efectivos);
  view.showTareas(tareas);
  lista.replaceChildren(
    ...efectivos.filter((e) => e.lat !== null).map((e) => el("li", {}, `Efectivo ${e.nombre}: ${e.lat.toFixed(4)}, ${e.lng.toFixed(4)} (${age(e.posicion_en)})`)),
    ...tareas.filter((t) => t.ubicacion_lat !== null).map((t) => el("li", {}, `Tarea ${t.codigo}: ${t.ubicacion_lat.toFixed(4)}, ${t.ubicacion_lng.toFixed(4)}`)),
  );
}

await readUntilDone(load, sayReadFailure(document.getElementById("mapa-error"), "las posiciones"));
const loadSoon = coalesced(load, 300);
connectLive({
  onEvent() {
    // Bursts of position updates redraw once, and a steady stream of them at most every 300 ms.
    loadSoon();
  },
  onResync: load,
});
