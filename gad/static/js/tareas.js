// Tareas list: every tarea the viewer may read, filtered and paged, with the total.
import { coalesced, el, ESTADOS } from "./api.js";
import { pagedList } from "./pager.js";
import { connectLive } from "./live.js";

const body = document.getElementById("tareas");
const list = pagedList({
  path: "/api/v1/tasks",
  form: document.getElementById("filtros"),
  render(items) {
    body.replaceChildren(
      ...items.map((t) =>
        el(
          "tr",
          { "data-tarea-id": String(t.id) },
          el("td", {}, el("a", { href: `/tareas/${t.id}` }, t.codigo)),
          el("td", {}, t.titulo),
          el("td", {}, ESTADOS[t.estado]),
          el("td", {}, String(t.prioridad)),
          el("td", {}, t.tipo),
          el("td", {}, t.efectivos.map((e) => e.nombre).join(", ") || "—"),
        ),
      ),
    );
  },
});
await list.load();
const loadSoon = coalesced(list.load, 300);
connectLive({
  onEvent(frame) {
    if (frame.topic !== "tareas" && frame.topic !== "emergencias") return;
    loadSoon();
  },
  onResync: list.load,
});
