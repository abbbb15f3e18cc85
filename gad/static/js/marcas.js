// Board marks: each assignment's answer (acepta / no puede) and escalations, on the tarea cards of the board.
// Decorates any element with data-tarea-id inside the board, whoever rendered it, so the board's own
// rendering stays untouched; answers arrive live through the page's socket ("gad:frame" from live.js).
import { api, el, readUntilDone } from "./api.js";

const supervisor = Number(document.body.dataset.nivel) >= 2;
const marcas = new Map(); // tarea_id -> Map(notificacion id -> payload)
const MARCA = { aceptada: "✓ Acepta", rechazada: "✗ No puede" };

function remember(n) {
  if (n.tarea_id === null || !n.requiere_respuesta) return;
  if (!marcas.has(n.tarea_id)) marcas.set(n.tarea_id, new Map());
  marcas.get(n.tarea_id).set(n.id, n);
}

function chips(tareaId) {
  const items = [...(marcas.get(tareaId)?.values() ?? [])].sort((a, b) => a.id - b.id);
  return items
    .filter((n) => n.respuesta || n.escalada_en)
    .map((n) => {
      const estado = n.escalada_en && !n.respuesta ? "escalada" : n.estado;
      const texto = estado === "escalada" ? `⚠ Sin respuesta: ${n.destinatario}` : `${MARCA[estado] ?? estado}: ${n.destinatario}${n.motivo ? ` (${n.motivo})` : ""}`;
      return el("span", { class: `marca marca-${estado}`, "data-notificacion-id": String(n.id), "data-marca": estado }, texto);
    });
}

function decorate() {
  for (const card of document.querySelectorAll(".tablero [data-tarea-id], #emergencias [data-tarea-id]")) {
    const id = Number(card.dataset.tareaId);
    const wanted = chips(id);
    const signature = wanted.map((c) => `${c.dataset.notificacionId}:${c.dataset.marca}`).join(",");
    if (card.dataset.marcas === signature) continue;
    card.dataset.marcas = signature;
    card.querySelector(".respuestas")?.remove();
    if (wanted.length) card.append(el("p", { class: "respuestas" }, ...wanted));
  }
}

if (supervisor) {
  // Heard from before the ledger is read: an answer given while the read was on its way (the board's socket is
  // often open by then) was never marked. Its frame is newer than that read, whose older copy does not replace it.
  const heard = new Set();
  window.addEventListener("gad:frame", ({ detail: { frame } }) => {
    if (frame.topic === "notificaciones" && ["notification_answered", "notification_escalated"].includes(frame.event_type)) {
      heard.add(frame.data.id);
      remember(frame.data);
      decorate();
    }
  });
  // Cards drawn later (a new tarea, the board's reload) are marked too, whether or not the ledger read succeeds.
  new MutationObserver(decorate).observe(document.getElementById("contenido"), { childList: true, subtree: true });
  const read = async () => {
    const { data } = await api("/api/v1/notificaciones?todos=true&causa=asignacion,emergencia&limit=200");
    for (const n of data.items.reverse()) if (!heard.has(n.id)) remember(n);
    decorate();
  };
  await readUntilDone(read, () => {}); // meanwhile, the answers heard live are marked
}
