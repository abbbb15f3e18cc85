// Usuarios (administradores): paged list; create with an initial password, edit, deactivate/reactivate,
// reset the password (which also ends every session of that usuario). The API enforces gad/policy.py.
import { api, el, NIVELES } from "./api.js";
import { clean, openForm } from "./formdialog.js";
import { pagedList } from "./pager.js";

const body = document.getElementById("usuarios");
const aviso = document.getElementById("aviso");
const yo = Number(document.getElementById("tabla-usuarios").dataset.yo);
const NIVEL_OPTIONS = Object.entries(NIVELES);

function say(text) {
  aviso.hidden = !text;
  aviso.textContent = text ?? "";
}

function create() {
  openForm({
    title: "Nuevo usuario",
    submitLabel: "Crear",
    note: "La contraseña inicial se comunica a la persona por un canal seguro; debe cambiarla al entrar.",
    fields: [
      { name: "email", label: "Correo electrónico", type: "email", required: true, autocomplete: "off" },
      { name: "password", label: "Contraseña inicial", type: "password", required: true, autocomplete: "new-password", help: "Al menos 10 caracteres y distinta del correo." },
      { name: "dni", label: "DNI", required: true, maxLength: 20 },
      { name: "nombre", label: "Nombre", required: true, maxLength: 100 },
      { name: "apellido", label: "Apellido", required: true, maxLength: 100 },
      { name: "telefono", label: "Teléfono", type: "tel", maxLength: 30 },
      { name: "telegram_id", label: "Telegram ID", inputMode: "numeric" },
      { name: "nivel", label: "Nivel", type: "select", options: NIVEL_OPTIONS, value: 1 },
      { name: "verificado", label: "Verificado", type: "checkbox" },
    ],
    onSubmit: async (values) => {
      const { data } = await api("/api/v1/users", { method: "POST", body: clean(values, { numbers: ["telegram_id", "nivel"], omitBlank: true }) });
      say(`Usuario ${data.email} creado.`);
      list.load();
    },
  });
}

function edit(u) {
  openForm({
    title: `Editar ${u.email}`,
    fields: [
      { name: "nombre", label: "Nombre", value: u.nombre, required: true, maxLength: 100 },
      { name: "apellido", label: "Apellido", value: u.apellido, required: true, maxLength: 100 },
      { name: "telefono", label: "Teléfono", type: "tel", value: u.telefono, maxLength: 30 },
      { name: "telegram_id", label: "Telegram ID", value: u.telegram_id, inputMode: "numeric" },
      { name: "nivel", label: "Nivel", type: "select", options: NIVEL_OPTIONS, value: u.nivel },
      { name: "verificado", label: "Verificado", type: "checkbox", value: u.verificado },
    ],
    onSubmit: async (values) => {
      const changes = clean(values, { numbers: ["telegram_id", "nivel"] });
      await api(`/api/v1/users/${u.id}`, { method: "PATCH", body: changes, headers: { "If-Match": `"${u.version}"` } });
      say(`Cambios de ${u.email} guardados.`);
      list.load();
    },
  });
}

function resetPassword(u) {
  openForm({
    title: `Nueva contraseña para ${u.email}`,
    note: "Cierra todas sus sesiones abiertas: tendrá que entrar de nuevo con esta contraseña.",
    submitLabel: "Restablecer",
    fields: [{ name: "password", label: "Nueva contraseña", type: "password", required: true, autocomplete: "new-password", help: "Al menos 10 caracteres y distinta del correo." }],
    onSubmit: async (values) => {
      await api(`/api/v1/users/${u.id}`, { method: "PATCH", body: { password: values.password }, headers: { "If-Match": `"${u.version}"` } });
      say(`Contraseña de ${u.email} restablecida; sus sesiones se han cerrado.`);
      list.load();
    },
  });
}

async function setActive(u, activo, button) {
  if (!activo && !confirm(`¿Desactivar a ${u.email}? Se cerrarán todas sus sesiones.`)) return;
  button.disabled = true;
  try {
    if (activo) await api(`/api/v1/users/${u.id}/reactivar`, { method: "POST" });
    else await api(`/api/v1/users/${u.id}`, { method: "DELETE" });
    say(`${u.email} ${activo ? "reactivado" : "desactivado"}.`);
  } catch (error) {
    say(error.message);
  }
  list.load();
}

async function endSessions(u, button) {
  if (!confirm(`¿Cerrar todas las sesiones de ${u.email}? Tendrá que volver a entrar en todos sus dispositivos.`)) return;
  button.disabled = true;
  try {
    await api(`/api/v1/users/${u.id}/logout-all`, { method: "POST" });
    say(`Sesiones de ${u.email} cerradas en todos sus dispositivos.`);
  } catch (error) {
    say(error.message);
  }
  button.disabled = false;
}

function row(u) {
  const actions = el("td", { class: "acciones-fila" });
  const name = `${u.nombre} ${u.apellido}`;
  actions.append(el("button", { type: "button", onclick: () => edit(u), "aria-label": `Editar ${name}` }, "Editar"));
  actions.append(el("button", { type: "button", onclick: () => resetPassword(u), "aria-label": `Restablecer la contraseña de ${name}` }, "Contraseña"));
  if (u.id !== yo) {
    const sesiones = el("button", { type: "button", "aria-label": `Cerrar las sesiones de ${name}` }, "Cerrar sesiones");
    sesiones.addEventListener("click", () => endSessions(u, sesiones));
    actions.append(sesiones);
    const toggle = el("button", { type: "button", class: u.activo ? "peligro" : "", "aria-label": `${u.activo ? "Desactivar" : "Reactivar"} a ${name}` }, u.activo ? "Desactivar" : "Reactivar");
    toggle.addEventListener("click", () => setActive(u, !u.activo, toggle));
    actions.append(toggle);
  }
  return el(
    "tr",
    { "data-usuario-id": String(u.id) },
    el("td", {}, u.email),
    el("td", {}, name),
    el("td", {}, NIVELES[u.nivel]),
    el("td", {}, u.verificado ? "Sí" : "No"),
    el("td", {}, u.activo ? "Sí" : "No"),
    actions,
  );
}

const list = pagedList({ path: "/api/v1/users", form: document.getElementById("filtros"), render: (items) => body.replaceChildren(...items.map(row)) });
document.getElementById("nuevo-usuario").addEventListener("click", create);
await list.load();
