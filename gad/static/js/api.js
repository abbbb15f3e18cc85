// Same-origin JSON API calls with the session cookie and the CSRF header the API requires for writes.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(data?.detail ?? `Error ${response.status}`);
    error.status = response.status;
    error.problem = data;
    throw error;
  }
  return { data, etag: response.headers.get("ETag") };
}

// Text only: user-provided strings never go through innerHTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

export const ESTADOS = { programada: "Programada", en_curso: "En curso", pausada: "Pausada", finalizada: "Finalizada", cancelada: "Cancelada" };
export const DISPONIBILIDAD = { disponible: "Disponible", en_tarea: "En tarea", fuera_servicio: "Fuera de servicio", no_disponible: "No disponible" };
