// Efectivos: paged list with the age of each last position; supervisors create, edit, link to a usuario,
// deactivate and change availability (with motivo). An efectivo sees and sets only their own.
import { age, api, coalesced, el, DISPONIBILIDAD } from "./api.js";
import { clean, openForm } from "./formdialog.js";
import { pagedList } from "./pager.js";
import { connectLive } from "./live.js";

const supervisor = document.getElementById("tabla-efectivos").dataset.supervisor === "si";
const body = document.getElementById("efectivos");
const aviso = document.getElementById("aviso");

function say(text) {
  aviso.hidden = !text;
  aviso.textContent = text ?? "";
}

async function usuarioOptions(current) {
  if (!supervisor) return [["", "—"]];
  try {
    // Only usuarios no other efectivo is linked to (offered one, the create was refused with a 409); this one's own stays.
    const { data } = await api("/api/v1/users?limit=200&activo=true&nivel=1&con_efectivo=false");
    const label = (u) => `${u.nombre} ${u.apellido} (${u.email})`;
    // Editing a linked efectivo: its own usuario is linked, so not in that list; it stays the choice shown.
    const own = current ? await api(`/api/v1/users/${current}`).then(({ data: u }) => [[u.id, label(u)]], () => [[current, `usuario ${current}`]]) : [];
    return [["", "Sin usuario"], ...own, ...data.items.map((u) => [u.id, label(u)])];
  } catch {
    return [["", "Sin usuario"]];
  }
}

const FIELDS = (e, usuarios) => [
  { name: "codigo_interno", label: "Código interno", value: e?.codigo_interno, required: true, maxLength: 30 },
  { name: "nombre", label: "Nombre", value: e?.nombre, required: true, maxLength: 200 },
  { name: "usuario_id", label: "Usuario vinculado (para su página Mi servicio)", type: "select", options: usuarios, value: e?.usuario_id ?? "" },
  { name: "rango", label: "Rango", value: e?.rango, maxLength: 50 },
  { name: "unidad", label: "Unidad", value: e?.unidad, maxLength: 100 },
  { name: "especialidad", label: "Especialidad", value: e?.especialidad, maxLength: 100 },
];

// The dialog opens once the usuarios are read (a slow link: seconds): meanwhile a second press does not open a second
// dialog over the first. aria-disabled rather than disabled: a disabled button loses the focus, and the dialog,
// which returns the focus to whatever held it when it opened, would then return it to nowhere.
async function opening(button, open) {
  if (button.getAttribute("aria-disabled") === "true") return;
  button.setAttribute("aria-disabled", "true");
  try {
    await open();
  } finally {
    button.removeAttribute("aria-disabled");
  }
}

async function create() {
  openForm({
    title: "Nuevo efectivo",
    fields: FIELDS(null, await usuarioOptions(null)),
    submitLabel: "Crear",
    onSubmit: async (values) => {
      await api("/api/v1/efectivos", { method: "POST", body: clean(values, { numbers: ["usuario_id"], omitBlank: true }) });
      say("Efectivo creado.");
      list.load();
    },
  });
}

async function edit(e) {
  openForm({
    title: `Editar ${e.codigo_interno}`,
    fields: FIELDS(e, await usuarioOptions(e.usuario_id)),
    onSubmit: async (values) => {
      // A cleared código or nombre is sent as cleared: the server says, beside the field, that it cannot be empty (left
      // out, the dialog closed on «Cambios guardados» with the old name still there).
      const changes = clean(values, { numbers: ["usuario_id"] });
      await api(`/api/v1/efectivos/${e.id}`, { method: "PATCH", body: changes, headers: { "If-Match": `"${e.version}"` } });
      say("Cambios guardados.");
      list.load();
    },
  });
}

function availability(e) {
  // "En tarea" is the tareas' to set, not a choice here; for an efectivo en tarea the select preselected "Disponible",
  // which the server then refused. It says where they are and asks for a choice.
  const choices = Object.entries(DISPONIBILIDAD).filter(([k]) => k !== "en_tarea");
  const options = e.estado_disponibilidad === "en_tarea" ? [["", "Ahora: En tarea (elija otra)"], ...choices] : choices;
  openForm({
    title: `Disponibilidad de ${e.nombre}`,
    fields: [
      { name: "estado", label: "Disponibilidad", type: "select", options, value: e.estado_disponibilidad === "en_tarea" ? "" : e.estado_disponibilidad },
      { name: "motivo", label: "Motivo (opcional)", type: "textarea", maxLength: 500 },
    ],
    onSubmit: async (values) => {
      await api(`/api/v1/efectivos/${e.id}/disponibilidad`, { method: "POST", body: clean(values, { omitBlank: true }), headers: { "If-Match": `"${e.version}"` } });
      say(`${e.nombre}: ${DISPONIBILIDAD[values.estado]}.`);
      list.load();
    },
  });
}

async function deactivate(e, button) {
  if (!confirm(`¿Dar de baja a ${e.nombre} (${e.codigo_interno})?`)) return;
  button.disabled = true;
  try {
    await api(`/api/v1/efectivos/${e.id}`, { method: "DELETE", headers: { "If-Match": `"${e.version}"` } });
    say(`${e.nombre} dado de baja.`);
  } catch (error) {
    say(error.message);
  }
  list.load();
}

function row(e) {
  const actions = el("td", { class: "acciones-fila" });
  if (e.activo) {
    actions.append(el("button", { type: "button", onclick: () => availability(e), "aria-label": `Disponibilidad de ${e.nombre}` }, "Disponibilidad"));
    if (supervisor) {
      actions.append(el("button", { type: "button", onclick: (event) => opening(event.currentTarget, () => edit(e)), "aria-label": `Editar ${e.nombre}` }, "Editar"));
      const baja = el("button", { type: "button", class: "peligro", "aria-label": `Dar de baja a ${e.nombre}` }, "Dar de baja");
      baja.addEventListener("click", () => deactivate(e, baja));
      actions.append(baja);
    }
  }
  const posicion = e.lat === null ? "sin posición" : `${e.lat.toFixed(4)}, ${e.lng.toFixed(4)} (${age(e.posicion_en)})`;
  return el(
    "tr",
    { "data-efectivo-id": String(e.id) },
    el("td", {}, e.codigo_interno),
    el("td", {}, e.nombre),
    el("td", {}, [e.rango, e.unidad].filter(Boolean).join(" · ")),
    el("td", { "data-disponibilidad": e.estado_disponibilidad }, DISPONIBILIDAD[e.estado_disponibilidad]),
    el("td", { "data-en-servicio": String(e.en_servicio) }, e.en_servicio ? "Sí" : "No"),
    el("td", {}, posicion),
    actions,
  );
}

const list = pagedList({ path: "/api/v1/efectivos", form: document.getElementById("filtros"), render: (items) => body.replaceChildren(...items.map(row)) });
document.getElementById("nuevo-efectivo")?.addEventListener("click", (event) => opening(event.currentTarget, create));
await list.load();
const loadSoon = coalesced(list.load, 300);
connectLive({
  onEvent(frame) {
    if (frame.topic !== "efectivos") return;
    loadSoon();
  },
  onResync: list.load,
});
