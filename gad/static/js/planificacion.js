// Planificación: a week per unidad (turnos, licencias, reservas), create and move turnos, conflicts
// checked with the server before saving. Times are shown in the server's zone (ZONA_HORARIA).
import { api, coalesced, el, newestOnly, readUntilDone } from "./api.js";
import { connectLive } from "./live.js";

const DIAS = ["Lunes", "Martes", "Miércoles", "Jueves", "Viernes", "Sábado", "Domingo"];
const TIPOS_TURNO = { servicio: "Servicio", guardia: "Guardia", reten: "Retén" };
const TIPOS_LICENCIA = { vacaciones: "Vacaciones", enfermedad: "Enfermedad", formacion: "Formación", otra: "Licencia" };
const $ = (id) => document.getElementById(id);

let semana = null; // last response of /api/v1/planificacion/semana
let editando = null; // the turno being moved, or null for a new one

// Wall-clock parts of an instant in the planning zone (the browser's own zone may differ).
function partes(iso, zona) {
  const fmt = new Intl.DateTimeFormat("en-CA", { timeZone: zona, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const p = Object.fromEntries(fmt.formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
  return { dia: `${p.year}-${p.month}-${p.day}`, hora: `${p.hour}:${p.minute}` };
}

// A datetime-local value (wall clock in the planning zone) to an ISO instant with the right offset.
function instante(local, zona) {
  const guess = new Date(`${local}:00Z`);
  const shown = partes(guess.toISOString(), zona);
  const drift = new Date(`${shown.dia}T${shown.hora}:00Z`).getTime() - guess.getTime();
  return new Date(guess.getTime() - drift).toISOString();
}

function local(iso, zona) {
  const p = partes(iso, zona);
  return `${p.dia}T${p.hora}`;
}

function diasDeLaSemana() {
  const out = [];
  const inicio = new Date(semana.desde);
  for (let i = 0; i < 7; i += 1) out.push(partes(new Date(inicio.getTime() + (i * 24 + 12) * 3600e3).toISOString(), semana.zona_horaria).dia);
  return out;
}

// Every local day an item [inicio, fin) touches inside the week.
function diasDe(item, dias) {
  const desde = partes(item.inicio, semana.zona_horaria).dia;
  const finMenos = new Date(new Date(item.fin).getTime() - 1).toISOString();
  const hasta = partes(finMenos, semana.zona_horaria).dia;
  return dias.filter((d) => d >= desde && d <= hasta);
}

function rango(item) {
  const a = partes(item.inicio, semana.zona_horaria);
  const b = partes(item.fin, semana.zona_horaria);
  return a.dia === b.dia ? `${a.hora}–${b.hora}` : `${a.dia.slice(5)} ${a.hora} – ${b.dia.slice(5)} ${b.hora}`;
}

function render() {
  const dias = diasDeLaSemana();
  const hoy = partes(new Date().toISOString(), semana.zona_horaria).dia;
  $("rango").textContent = `Semana del ${dias[0]} al ${dias[6]} (${semana.zona_horaria})${semana.unidad ? ` · ${semana.unidad}` : ""}`;
  $("cabecera").replaceChildren(el("th", { scope: "col" }, "Efectivo"), ...dias.map((d, i) => el("th", { scope: "col" }, `${DIAS[i]} ${d.slice(8)}/${d.slice(5, 7)}`)));
  const filas = semana.efectivos.map((e) => {
    const celdas = dias.map((d) => el("td", { "data-dia": d, class: d === hoy ? "hoy" : "" }));
    const poner = (item, nodo) => diasDe(item, dias).forEach((d) => celdas[dias.indexOf(d)].append(nodo.cloneNode(true)));
    for (const t of semana.turnos.filter((x) => x.efectivo_id === e.id)) {
      const nodo = el("span", { class: `bloque turno ${t.tipo}`, "data-turno-id": String(t.id), title: t.notas ?? "" }, `${TIPOS_TURNO[t.tipo]} ${rango(t)}`);
      diasDe(t, dias).forEach((d) => {
        const copia = nodo.cloneNode(true);
        copia.tabIndex = 0;
        copia.setAttribute("role", "button");
        copia.addEventListener("click", () => editar(t));
        copia.addEventListener("keydown", (ev) => ev.key === "Enter" && editar(t));
        celdas[dias.indexOf(d)].append(copia);
      });
    }
    for (const l of semana.licencias.filter((x) => x.efectivo_id === e.id)) {
      poner(l, el("span", { class: "bloque licencia", "data-licencia-id": String(l.id) }, `${TIPOS_LICENCIA[l.tipo]} ${rango(l)}`));
    }
    for (const r of semana.reservas.filter((x) => x.efectivo_id === e.id)) {
      const aviso = r.fuera_de_turno ? " · fuera de turno" : "";
      poner(r, el("span", { class: `bloque reserva${r.fuera_de_turno ? " fuera" : ""}`, "data-tarea-id": String(r.tarea_id), title: r.titulo }, `${r.codigo} ${rango(r)}${aviso}`));
    }
    const nombre = el("th", { scope: "row" }, `${e.codigo_interno} · ${e.nombre}`);
    if (e.en_servicio) nombre.append(el("span", { class: "en-servicio" }, "en servicio"));
    return el("tr", { "data-efectivo-id": String(e.id) }, nombre, ...celdas);
  });
  $("filas").replaceChildren(...(filas.length ? filas : [el("tr", {}, el("td", { colSpan: 8 }, "No hay efectivos en esta unidad."))]));
  const select = $("turno-efectivo");
  const elegido = select.value;
  select.replaceChildren(...semana.efectivos.map((e) => el("option", { value: String(e.id) }, `${e.codigo_interno} · ${e.nombre}`)));
  if (elegido) select.value = elegido;
  const unidad = $("unidad");
  const actual = unidad.value;
  unidad.replaceChildren(el("option", { value: "" }, "Todas"), ...semana.unidades.map((u) => el("option", { value: u }, u)));
  unidad.value = semana.unidad ?? actual;
}

const begin = newestOnly();

async function cargar() {
  const superseded = begin();
  const params = new URLSearchParams();
  if ($("unidad").value) params.set("unidad", $("unidad").value);
  if ($("semana").value) params.set("semana", $("semana").value);
  let data;
  try {
    ({ data } = await api(`/api/v1/planificacion/semana?${params}`));
  } catch (error) {
    if (!superseded()) $("rango").textContent = `No se pudo cargar la semana (${error.message}).`;
    throw error;
  }
  if (superseded()) return;
  semana = data;
  if (!$("semana").value) $("semana").value = partes(semana.desde, semana.zona_horaria).dia;
  render();
}

// Said in #rango when it fails.
const recargar = () => cargar().catch(() => {});

function mover(dias) {
  // Before the first week has arrived (or when it could not be read), from today.
  const desde = $("semana").value || (semana ? partes(semana.desde, semana.zona_horaria).dia : new Date().toISOString().slice(0, 10));
  const base = new Date(`${desde}T12:00:00Z`);
  $("semana").value = new Date(base.getTime() + dias * 86400e3).toISOString().slice(0, 10);
  recargar();
}

function editar(turno) {
  editando = turno;
  $("turno-id").value = String(turno.id);
  $("turno-efectivo").value = String(turno.efectivo_id);
  $("turno-tipo").value = turno.tipo;
  $("turno-inicio").value = local(turno.inicio, semana.zona_horaria);
  $("turno-fin").value = local(turno.fin, semana.zona_horaria);
  $("turno-repetir").value = "";
  $("turno-repetir").disabled = true;
  $("guardar").textContent = "Mover turno";
  mostrar(null);
}

function nuevo() {
  editando = null;
  $("form-turno").reset();
  $("turno-id").value = "";
  $("turno-repetir").disabled = false;
  $("guardar").textContent = "Guardar turno";
  mostrar(null);
}

function cuerpo() {
  // The instants are read in the week's zona horaria, which comes with it.
  if (!semana) throw new Error("La semana aún no se ha cargado: espere a que aparezca y vuelva a intentarlo.");
  const zona = semana.zona_horaria;
  if (!$("turno-inicio").value || !$("turno-fin").value) throw new Error("Indique inicio y fin del turno.");
  const body = { efectivo_id: Number($("turno-efectivo").value), tipo: $("turno-tipo").value, inicio: instante($("turno-inicio").value, zona), fin: instante($("turno-fin").value, zona) };
  const repetir = $("turno-repetir").value;
  if (repetir && !editando) {
    if (!$("turno-hasta").value) throw new Error("Indique hasta qué fecha se repite.");
    const hasta = instante(`${$("turno-hasta").value}T23:59`, zona);
    if (repetir === "semanal") body.repetir = { dias_semana: [0, 1, 2, 3, 4], hasta };
    else body.repetir = { cada_horas: repetir === "12x36" ? 48 : 24, hasta };
  }
  return body;
}

function describir(c) {
  const que = { turno: `el turno ${c.id}`, licencia: `la licencia ${c.id}`, reserva: `la tarea ${c.codigo ?? c.id}` }[c.clase];
  return `Se solapa con ${que} (${rango(c)}).`;
}

function mostrar(resultado) {
  const zona = $("conflictos");
  if (resultado === null) return zona.replaceChildren();
  if (typeof resultado === "string") return zona.replaceChildren(el("p", { class: "hay" }, resultado));
  if (!resultado.length) return zona.replaceChildren(el("p", { class: "ok" }, "Sin conflictos."));
  zona.replaceChildren(el("p", { class: "hay" }, `${resultado.length} conflicto(s):`), el("ul", {}, ...resultado.slice(0, 10).map((c) => el("li", {}, describir(c)))));
}

async function comprobar() {
  try {
    const body = cuerpo();
    if (editando) body.skip_turno = editando.id;
    const { data } = await api("/api/v1/turnos/comprobar", { method: "POST", body });
    mostrar(data.conflictos);
    return data.conflictos;
  } catch (error) {
    mostrar(error.problem?.errors?.[0]?.mensaje ?? error.problem?.mensaje ?? error.message);
    return null;
  }
}

async function guardar(event) {
  event.preventDefault();
  try {
    const body = cuerpo();
    if (editando) {
      delete body.repetir;
      await api(`/api/v1/turnos/${editando.id}`, { method: "PATCH", body, headers: { "If-Match": `"${editando.version}"` } });
    } else {
      await api("/api/v1/turnos", { method: "POST", body });
    }
    nuevo();
    $("conflictos").replaceChildren(el("p", { class: "ok" }, "Turno guardado."));
    await recargar(); // saved: a failed reload is said in #rango, not as a failed save
  } catch (error) {
    const c = error.problem?.conflicto;
    if (error.status === 409 && c) mostrar([c]);
    else if (error.status === 412) mostrar("El turno cambió mientras lo editaba; vuelva a abrirlo.");
    else mostrar(error.problem?.errors?.[0]?.mensaje ?? error.problem?.mensaje ?? error.message);
  }
}

$("unidad").addEventListener("change", recargar);
$("semana").addEventListener("change", recargar);
$("anterior").addEventListener("click", () => mover(-7));
$("siguiente").addEventListener("click", () => mover(7));
$("comprobar").addEventListener("click", comprobar);
$("nuevo").addEventListener("click", nuevo);
$("form-turno").addEventListener("submit", guardar);

await readUntilDone(cargar, () => {});
document.body.dataset.listo = "true";
// Bookings change with more than (un)assignments: a tarea finished, cancelled or deleted frees them (no
// task_unassigned then), a new schedule moves them; and an efectivo created, moved to another unidad or taken off
// duty changes the rows. Only positions leave the week as it is.
const AFFECTS_WEEK = ["turnos", "tareas", "emergencias", "efectivos"];
const cargarSoon = coalesced(cargar, 300); // a busy service sends many such frames a second: one reload for a burst
connectLive({
  onEvent(frame) {
    if (AFFECTS_WEEK.includes(frame.topic) && frame.event_type !== "efectivo_location_update") cargarSoon();
  },
  onResync: recargar,
});
