// Usuarios page (administradores).
import { api, el } from "./api.js";

const NIVELES = { 1: "Efectivo", 2: "Supervisor", 3: "Administrador" };
const { data } = await api("/api/v1/users?limit=200");
document.getElementById("usuarios").replaceChildren(
  ...data.items.map((u) => el("tr", {}, el("td", {}, u.email), el("td", {}, `${u.nombre} ${u.apellido}`), el("td", {}, NIVELES[u.nivel]), el("td", {}, u.activo ? "Sí" : "No"))),
);
