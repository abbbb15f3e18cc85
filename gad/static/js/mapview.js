// The map of efectivos (with the age of each position) and located open tareas, shared by /mapa and the board.
// Tooltips get DOM nodes built with textContent: Leaflet inserts a string tooltip as HTML.
import { age, ageSeconds, el, DISPONIBILIDAD } from "./api.js";

const STALE_S = 15 * 60;

export function createMap(container, { onPick } = {}) {
  const L = window.L;
  const map = L.map(container, { keyboard: true }).setView([40.4169, -3.7035], 12);
  L.tileLayer(container.dataset.tiles, { maxZoom: 19, attribution: "© OpenStreetMap" }).addTo(map);
  const efectivosLayer = L.layerGroup().addTo(map);
  const tareasLayer = L.layerGroup().addTo(map);
  let pick = null;
  if (onPick) {
    map.on("click", (event) => {
      if (pick) pick.remove();
      pick = L.circleMarker(event.latlng, { radius: 9, color: "#dc2626", weight: 3 }).addTo(map);
      onPick(event.latlng.lat, event.latlng.lng);
    });
  }
  return {
    map,
    showEfectivos(list) {
      efectivosLayer.clearLayers();
      for (const e of list.filter((x) => x.lat !== null)) {
        const stale = ageSeconds(e.posicion_en) > STALE_S;
        const color = stale ? "#6b7280" : e.estado_disponibilidad === "disponible" ? "#15803d" : "#b45309";
        L.circleMarker([e.lat, e.lng], { radius: 7, color, dashArray: stale ? "3" : null })
          .addTo(efectivosLayer)
          .bindTooltip(el("span", {}, `${e.nombre} · ${DISPONIBILIDAD[e.estado_disponibilidad]} · ${age(e.posicion_en)}`));
      }
    },
    showTareas(list) {
      tareasLayer.clearLayers();
      for (const t of list.filter((x) => x.ubicacion_lat !== null)) {
        const color = t.es_emergencia ? "#dc2626" : "#1d4ed8";
        L.circleMarker([t.ubicacion_lat, t.ubicacion_lng], { radius: t.es_emergencia ? 11 : 8, color, fillOpacity: 0.5 })
          .addTo(tareasLayer)
          .bindTooltip(el("span", {}, `${t.codigo} · ${t.titulo}`));
      }
    },
    clearPick() {
      if (pick) pick.remove();
      pick = null;
    },
    focus(lat, lng) {
      map.setView([lat, lng], Math.max(map.getZoom(), 14));
    },
  };
}
