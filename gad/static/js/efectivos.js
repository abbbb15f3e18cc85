// Efectivos page: availability and how old each reported position is.
import { api, el, DISPONIBILIDAD } from "./api.js";

function age(iso) {
  if (!iso) return "sin posición";
  const minutes = Math.round((Date.now() - new Date(iso).getTime()) / 60000);
  return minutes < 1 ? "hace menos de 1 min" : `hace ${minutes} min`;
}

const { data } = await api("/api/v1/efectivos?limit=200");
document.getElementById("efectivos").replaceChildren(
  ...data.items.map((e) => el("tr", {}, el("td", {}, e.codigo_interno), el("td", {}, e.nombre), el("td", {}, e.unidad ?? ""), el("td", {}, DISPONIBILIDAD[e.estado_disponibilidad]), el("td", { "data-en-servicio": String(e.en_servicio) }, e.en_servicio ? "Sí" : "No"), el("td", {}, e.lat === null ? "sin posición" : `${e.lat.toFixed(4)}, ${e.lng.toFixed(4)} (${age(e.posicion_en)})`))),
);
