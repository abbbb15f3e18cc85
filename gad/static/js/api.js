// Same-origin JSON API calls with the session cookie and the CSRF header the API requires for writes,
// plus the few DOM helpers every page shares (text only: user strings never go through innerHTML).
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
// Whom the page was drawn for: the server answers 401 when the browser's session is now another usuario's (a shared
// phone's old tab), instead of that usuario's data, or of refusing this page's outbox for its stale CSRF token.
export const pageUsuario = document.body.dataset.usuarioId ?? null;

// `giveUpAfterMs`: a request that neither answers nor fails by then (a link that hangs, a captive portal) is given up
// and said as no coverage. For the phone's outbox (cola.js), which sends one item at a time: an SOS said "Enviando…"
// for as long as it hung, and nothing behind it went. Not for the rest, where a slow answer is still worth waiting for.
export async function api(path, { method = "GET", body, headers = {}, idempotencyKey, giveUpAfterMs } = {}) {
  const giveUp = new AbortController();
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers }, signal: giveUp.signal };
  if (pageUsuario) init.headers["X-GAD-Usuario"] = pageUsuario;
  if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
  if (idempotencyKey) init.headers["Idempotency-Key"] = idempotencyKey;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  // A controller and a timer, not AbortSignal.timeout, which older phones' browsers lack; it bounds the body too.
  const timer = giveUpAfterMs === undefined ? undefined : setTimeout(() => giveUp.abort(), giveUpAfterMs);
  let response;
  let data;
  try {
    response = await fetch(path, init);
    data = response.status === 204 ? null : await response.json().catch(() => null);
    // Given up while the body was on its way: an answer without its body is no answer (an SOS applied and shown as
    // nothing). Sent again, its Idempotency-Key has the server give the same answer.
    if (giveUp.signal.aborted) throw new Error("gave up");
  } catch {
    // No answer at all (no coverage, the server unreachable, or none in time): said in Spanish, and without a
    // status, which the outbox reads as "keep it for later".
    throw new Error("Sin conexión con la central: vuelva a intentarlo cuando haya cobertura.");
  } finally {
    clearTimeout(timer);
  }
  if (response.status === 401) sessionEnded();
  else if (response.ok) sessionUsed(); // a refusal does not keep the session in use on the server (db_session.py)
  if (!response.ok) {
    const error = new Error(spanishDetail(response.status, data));
    error.status = response.status;
    error.problem = data;
    error.etag = response.headers.get("ETag");
    throw error;
  }
  return { data, etag: response.headers.get("ETag") };
}

// --- the session's end ----------------------------------------------------------------------------------------
// A 401 is never transient: the session expired (idle), was ended from another device, or the password changed.
// Pages said "Sin conexión — reintentando" and retried for ever, so an operator at a wall screen took a board that
// no longer updated for a network problem. Now every page says it once, with the way back to where it was.
let ended = false;
// Ended by this page's own reckoning (below), without coverage: the server's next answer settles it either way.
let judged = false;

// The phone page also opens from the service worker's copy, without coverage, perhaps hours after its session idled
// out and in another officer's hand (a shared phone): it showed the first one's tareas and took the next one's SOS as
// waiting for coverage, when it waited for the first to log in again. The server draws it with how long a session
// lives without use and in all (body data-sesion-*); each answer from the server (and each frame of the live socket,
// which keeps the session in use) is use, on any page of the usuario. Past either limit the session is over, as a 401
// would say; should the server have seen a use this page did not (an answer lost on the way), its next answer says
// so and the page goes on.
const LIMITS = pageUsuario ? `gad:sesion:${pageUsuario}` : null;
const drawnWithLimits = Boolean(document.body.dataset.sesionInactivaS);
// Drawn by the server just now, not the service worker's copy (which has no event-log head).
const drawnNow = document.body.dataset.lastEventId !== undefined;
const readLimits = () => {
  try {
    return JSON.parse(localStorage.getItem(LIMITS) ?? "null");
  } catch {
    return null;
  }
};
const writeLimits = (limits) => {
  try {
    localStorage.setItem(LIMITS, JSON.stringify(limits));
  } catch {
    /* storage full or refused: the page goes on as before, told by the server's 401 */
  }
};
if (LIMITS && drawnWithLimits && drawnNow) {
  const now = Date.now();
  const { sesionInactivaS, sesionRestaS } = document.body.dataset;
  writeLimits({ visto: now, inactiva: Number(sesionInactivaS) * 1000, expira: now + Number(sesionRestaS) * 1000 });
}

export function sessionUsed() {
  const limits = LIMITS && readLimits();
  if (limits) writeLimits({ ...limits, visto: Date.now() });
  if (judged) {
    judged = false;
    ended = false;
    window.dispatchEvent(new CustomEvent("gad:session-resumed"));
  }
}

function lapsed() {
  if (!LIMITS || !drawnWithLimits) return false;
  const limits = readLimits();
  // A copy whose record is gone went with a logout (written back by a late answer after it): over.
  if (!limits) return !drawnNow;
  const now = Date.now();
  return now - limits.visto > limits.inactiva || now > limits.expira;
}

export function sessionIsOver() {
  if (!ended && lapsed()) {
    judged = true;
    sessionEnded({ lapsed: true });
  }
  return ended;
}

// `lapsed`: judged here from the limits, without coverage; otherwise the server said so (a 401), which is told again
// after a judgement of the page's own (the kept copy goes then, mi.js).
function sessionEnded({ lapsed = false } = {}) {
  const confirmed = !lapsed && judged;
  if (!lapsed) judged = false;
  if (ended && !confirmed) return;
  const first = !ended;
  ended = true;
  window.dispatchEvent(new CustomEvent("gad:session-ended", { detail: { lapsed } }));
  // A page with its own notice (the phone's, which also counts what waits in its outbox) shows that one instead.
  if (!first || document.getElementById("sesion")) return;
  const next = encodeURIComponent(location.pathname + location.search);
  const notice = el("p", { class: "red sesion-caducada", role: "alert", id: "sesion-caducada" }, "Su sesión ha caducado: esta página ya no se actualiza. ");
  notice.append(el("a", { href: `/login?next=${next}` }, "Volver a entrar"));
  document.getElementById("contenido")?.prepend(notice);
}

// A socket refused at its handshake looks like any dropped connection: whether the session is still there is asked.
export async function checkSession() {
  if (!sessionIsOver() || judged) await api("/api/v1/users/me").catch(() => {});
  return !ended;
}

// What a page's socket does when it closed: open again after `delay`, unless the session is over. `acknowledged`:
// the server had accepted this socket (then a drop is the network's, and the session is not asked about).
export async function reopenUnlessEnded(acknowledged, open, delay) {
  if ((!acknowledged || ended) && !(await checkSession())) return false;
  setTimeout(open, delay);
  return true;
}

const STATUS_TEXT = {
  400: "La petición no es válida.",
  401: "La sesión ha caducado: vuelva a iniciar sesión.",
  403: "No tiene permiso para esta acción.",
  404: "No existe (quizá lo borró otra persona).",
  409: "No es posible en el estado actual.",
  412: "Otra persona lo cambió mientras tanto.",
  413: "Demasiados datos.",
  422: "Revise los campos marcados.",
  423: "Cuenta bloqueada temporalmente.",
  429: "Demasiadas peticiones; espere un momento.",
  503: "El servicio no está disponible ahora; se reintentará.",
};

function spanishDetail(status, problem) {
  const base = STATUS_TEXT[status] ?? `Error ${status}.`;
  // The refusals people meet explain themselves in Spanish (`mensaje`: which tarea holds the efectivo, why a state
  // cannot follow); a conflict without one keeps the server's own words.
  if (problem?.mensaje) return `${base} ${problem.mensaje}`;
  if (status === 409 && problem?.detail) return `${base} ${problem.detail}`;
  return base;
}

// Field errors of a 422 (or a 409 naming a field) as {field: Spanish message}.
export function fieldErrors(error) {
  const out = {};
  // Several errors of one field (two unknown efectivos of a list) are all said, not the last one only.
  for (const e of error?.problem?.errors ?? []) {
    const field = e.field.replace(/^body\./, "");
    const message = e.mensaje ?? e.message;
    out[field] = out[field] && !out[field].includes(message) ? `${out[field]} ${message}` : message;
  }
  if (error?.problem?.field && !out[error.problem.field]) out[error.problem.field] = error.message;
  return out;
}

// Show each error next to its input (aria-invalid + aria-describedby), and the rest in the form's alert.
export function showFormErrors(form, error) {
  clearFormErrors(form);
  const errors = fieldErrors(error);
  const rest = [];
  for (const [field, message] of Object.entries(errors)) {
    const input = form.elements.namedItem(field);
    if (input instanceof HTMLElement) {
      const note = el("p", { class: "error campo-error", id: `${form.id}-error-${field}` }, message);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", note.id);
      input.after(note);
    } else rest.push(message);
  }
  const alert = form.querySelector(".form-alerta");
  if (alert) {
    alert.hidden = false;
    // Every error said by its field: the alert only points at them (it repeated a 409's whole sentence, "No es posible
    // en el estado actual. Ya hay un efectivo con ese código", above the same words under the field).
    const placed = Object.keys(errors).length > 0 && rest.length === 0;
    alert.textContent = rest.length ? rest.join(" ") : placed ? STATUS_TEXT[422] : error.message;
  }
  form.querySelector("[aria-invalid='true']")?.focus();
}

export function clearFormErrors(form) {
  for (const note of form.querySelectorAll(".campo-error")) note.remove();
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
  }
  const alert = form.querySelector(".form-alerta");
  if (alert) alert.hidden = true;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role" || key === "for") node.setAttribute(key, value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

export function age(iso) {
  if (!iso) return "sin posición";
  const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `hace ${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 120) return `hace ${minutes} min`;
  return `hace ${Math.round(minutes / 60)} h`;
}

export function ageSeconds(iso) {
  return iso ? (Date.now() - new Date(iso).getTime()) / 1000 : Infinity;
}

export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

// Fetch every page of a list endpoint (lists are capped at 200 per request).
// Pages reload on every live frame and every filter change, and answers can overtake each other: an older answer
// shown last left a stale list, or a stale ETag that failed the next write with 412, until the next change.
// Each call of the function this returns starts a request and returns a check to make before showing its answer:
// true when the answer to a newer request was already shown (this one is older: drop it); false otherwise, and
// the answer then counts as shown. Not "a newer request has started": while frames come faster than answers,
// every answer would be dropped and the page would never redraw.
export function newestOnly() {
  let started = 0;
  let shown = 0;
  return () => {
    const mine = ++started;
    return () => {
      if (mine < shown) return true;
      shown = mine;
      return false;
    };
  };
}

// Every page of a list endpoint (lists are capped at 200 per request), page by page; an item may come in two pages.
// Paging by offset while the list changes: an item that leaves a page already read (settled, deleted, no longer
// matching the filter) moves every later one back, and the next page, asked at the old offset, began one past an
// item it never read, left out until the next reload. So each page after the first is asked OVERLAP items early and
// must hold an item of the page before it: then every item listed throughout lies before that one (read already)
// or after it, in this page or the next. A page that holds none (more than OVERLAP left meanwhile) is asked again
// further back; the first page needs no check. It relies on an order a change does not move an item in, as every
// caller's is (id; created_at, then id). An item that comes in meanwhile moves later ones forward: read twice, not
// skipped. The end is a short page, not `total`: a count read apart from its page (notificaciones) can be short by
// one that came in between.
const PAGE = 200;
const OVERLAP = 20;
const MAX_BACKOFFS = 5;

export async function* pages(path) {
  const sep = path.includes("?") ? "&" : "?";
  let previous = null; // ids of the last page yielded
  let backoffs = 0;
  for (let offset = 0; ; ) {
    const { data } = await api(`${path}${sep}limit=${PAGE}&offset=${offset}`);
    const ids = new Set(data.items.map((item) => item.id));
    // Bounded for the whole read: under churn faster than the pages are read it would ask again for ever; after
    // MAX_BACKOFFS it goes on as plain offset paging would (an item it skips is shown by the next reload, which the
    // churn brings).
    if (offset > 0 && ![...previous].some((id) => ids.has(id)) && backoffs < MAX_BACKOFFS) {
      backoffs += 1;
      offset = Math.max(0, offset - (PAGE - OVERLAP));
      continue;
    }
    yield data.items;
    if (data.items.length < PAGE) return;
    previous = ids;
    offset += PAGE - OVERLAP;
  }
}

// Every item of a list endpoint, each once (the later copy of one read twice).
export async function fetchAll(path) {
  const byId = new Map();
  for await (const items of pages(path)) for (const item of items) byId.set(item.id, item);
  const items = [...byId.values()];
  return { items, total: items.length };
}

export const ESTADOS = { programada: "Programada", en_curso: "En curso", pausada: "Pausada", finalizada: "Finalizada", cancelada: "Cancelada" };
export const DISPONIBILIDAD = { disponible: "Disponible", en_tarea: "En tarea", fuera_servicio: "Fuera de servicio", no_disponible: "No disponible" };
export const NIVELES = { 1: "Efectivo", 2: "Supervisor", 3: "Administrador" };
export const TIPOS = ["patrullaje", "investigacion", "vigilancia", "intervencion", "administrativa", "entrenamiento", "emergencia"];

// Where a socket stored under `key` resumes: its tab's last event id, or on the tab's first page the event log's
// head the server read before rendering it (body[data-last-event-id]), so what commits between the page's first
// REST reads and the handshake is replayed rather than never delivered (an emergency raised while the board loads).
export function resumeFrom(key) {
  const rendered = document.body.dataset.lastEventId;
  if (sessionStorage.getItem(key) === null && rendered) sessionStorage.setItem(key, rendered);
  return sessionStorage.getItem(key);
}

// `fn` once for a burst of calls, `ms` after the first of it. A debounce (restarted by each call) would never run
// under a steady stream of frames, positions every few hundred ms, and the page would stop showing anything else.
// Never two runs at once: a call during a run schedules one more after it (that run starts after the call, so it
// sees its change), or reloads slower than `ms` on a loaded server would pile up requests.
export function coalesced(fn, ms) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    running = true;
    try {
      await fn();
    } catch {
      /* the next call reloads again */
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      schedule();
    }
  };
  const schedule = () => {
    if (running) again = true;
    else timer ??= setTimeout(run, ms);
  };
  return schedule;
}

// A page's first read, tried again until it succeeds: one 503 or dropped link at load time otherwise left a board
// empty ("0" everywhere, which reads as a quiet shift) and never live. A refusal (4xx but 429: not found, not allowed) is
// not tried again; it would get the same answer. `say(error, retrying)` tells what failed and whether it is tried
// again, and is called with null once a read succeeds. Resolves after the first attempt either way, so the page goes
// on (its socket opens).
export function readUntilDone(read, say, { firstDelayMs = 2000, maxDelayMs = 30000 } = {}) {
  let delay = firstDelayMs;
  const attempt = () =>
    read().then(
      () => say(null),
      (error) => {
        const retrying = error.status === undefined || error.status >= 500 || error.status === 429;
        say(error, retrying);
        if (!retrying) return;
        setTimeout(attempt, delay);
        delay = Math.min(delay * 2, maxDelayMs);
      },
    );
  return attempt();
}

// readUntilDone's `say` for a page whose failed read is told in `node` (hidden while there is nothing to tell): said
// once, not again at every retry, which a screen reader would repeat. Retried, the error's own text is not said: it
// tells the user to try again, which the page is doing.
export function sayReadFailure(node, what) {
  return (error, retrying) => {
    node.hidden = !error;
    const text = !error ? "" : retrying ? `No se pudieron cargar ${what}: se vuelve a intentar.` : `No se pudieron cargar ${what}: ${error.message}`;
    if (node.textContent !== text) node.textContent = text;
  };
}
