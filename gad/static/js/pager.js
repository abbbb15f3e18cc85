// A paged list: "N en total · del X al Y", previous/next, filters from a form; the URL keeps the filters and the page
// (`pagina`, from the second on), and each move to another page is a step the browser's Back returns from.
import { api, newestOnly } from "./api.js";

export function pagedList({ path, form, render, pageSize = 50, extra = () => ({}) }) {
  let offset = 0;
  // The page on screen: previous/next move from it, not from the last one asked for (pressed again before its answer,
  // or before the first, "Siguiente" walked past the end: "del 51 al 50", "Página 2 de 1").
  let shown = 0;
  const total = document.getElementById("total");
  const pagina = document.getElementById("pagina");
  const prev = document.getElementById("anterior");
  const next = document.getElementById("siguiente");

  const params = () => {
    const query = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim() !== "") query.set(k, String(v).trim());
    for (const [k, v] of Object.entries(extra())) if (v !== undefined && v !== "") query.set(k, v);
    return query;
  };

  const begin = newestOnly();

  async function load({ step = false } = {}) {
    const superseded = begin();
    const query = params();
    const filtered = query.toString() !== "";
    const asked = offset; // the page this answer is about, whatever the buttons do meanwhile
    if (asked > 0) query.set("pagina", String(Math.floor(asked / pageSize) + 1));
    // No filters, no "?": the address stays the one that was opened (and bookmarked, and awaited by whoever opened it).
    // A new filter or page is a step Back returns from; the same address again is no step.
    const search = query.toString();
    const address = search ? `${location.pathname}?${search}` : location.pathname;
    if (step && address !== location.pathname + location.search) history.pushState(null, "", address);
    else history.replaceState(null, "", address);
    query.delete("pagina");
    query.set("limit", String(pageSize));
    query.set("offset", String(asked));
    try {
      const { data } = await api(`${path}?${query}`);
      if (superseded()) return;
      if (asked > 0 && data.items.length === 0 && data.total > 0) {
        // A page past the end (a bookmark of a list that has shrunk since): its last page instead.
        offset = Math.floor((data.total - 1) / pageSize) * pageSize;
        return load();
      }
      render(data.items);
      shown = asked;
      const empty = filtered ? "Sin resultados: nada coincide con estos filtros." : "Sin resultados: la lista está vacía.";
      total.textContent = data.total ? `${data.total} en total · del ${asked + 1} al ${asked + data.items.length}` : empty;
      pagina.textContent = `Página ${Math.floor(asked / pageSize) + 1} de ${Math.max(1, Math.ceil(data.total / pageSize))}`;
      prev.disabled = asked === 0;
      next.disabled = asked + data.items.length >= data.total;
    } catch (error) {
      if (!superseded()) total.textContent = error.message;
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    load({ step: true });
  });
  prev.addEventListener("click", () => {
    offset = Math.max(0, shown - pageSize);
    load({ step: true });
  });
  next.addEventListener("click", () => {
    offset = shown + pageSize;
    load({ step: true });
  });
  // Filters and page from the URL (a board count links here with ?estado=...; a reload or Back keeps the page).
  const fromAddress = () => {
    const search = new URLSearchParams(location.search);
    for (const [k, v] of search) {
      const input = form.elements.namedItem(k);
      if (input) input.value = v;
    }
    const pagina = Number.parseInt(search.get("pagina") ?? "1", 10);
    offset = Number.isFinite(pagina) && pagina > 1 ? (pagina - 1) * pageSize : 0;
  };
  fromAddress();
  window.addEventListener("popstate", () => {
    form.reset(); // a filter the address no longer names is back to its default
    fromAddress();
    load();
  });
  return { load, reset: () => ((offset = 0), load()) };
}
