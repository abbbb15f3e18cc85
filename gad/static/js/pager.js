// A paged list: "N en total · del X al Y", previous/next, filters from a form; the URL keeps the filters.
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

  async function load() {
    const superseded = begin();
    const query = params();
    const asked = offset; // the page this answer is about, whatever the buttons do meanwhile
    // No filters, no "?": the address stays the one that was opened (and bookmarked, and awaited by whoever opened it).
    const search = query.toString();
    history.replaceState(null, "", search ? `${location.pathname}?${search}` : location.pathname);
    query.set("limit", String(pageSize));
    query.set("offset", String(asked));
    try {
      const { data } = await api(`${path}?${query}`);
      if (superseded()) return;
      render(data.items);
      shown = asked;
      const first = data.total ? asked + 1 : 0;
      total.textContent = `${data.total} en total · del ${first} al ${asked + data.items.length}`;
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
    load();
  });
  prev.addEventListener("click", () => {
    offset = Math.max(0, shown - pageSize);
    load();
  });
  next.addEventListener("click", () => {
    offset = shown + pageSize;
    load();
  });
  // Filters from the URL (a board count links here with ?estado=...).
  for (const [k, v] of new URLSearchParams(location.search)) {
    const input = form.elements.namedItem(k);
    if (input) input.value = v;
  }
  return { load, reset: () => ((offset = 0), load()) };
}
