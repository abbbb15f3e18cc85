// The phone's outbox: actions taken without coverage (estado changes, availability, positions, SOS) are kept
// in localStorage and sent when the network is back, actions in the order they were taken, then positions. Each
// carries its own Idempotency-Key, so a request whose answer was lost is applied once; a refusal (409/412/422/403) of an action is kept as a
// conflict to show, never dropped silently (a refused position fix is said beside the position instead). Network errors and 5xx leave the action queued for the next attempt; so does a 401 (the
// session is over: api.js says so, and the outbox waits for the officer to log in again).
//
// Each usuario has an outbox of their own: a phone is shared between shifts, and an action queued by one officer
// whose session then ended must never be sent in the name of the next one to log in (an SOS raised by the wrong
// person sends help to the wrong place). The page's usuario is the one the server rendered it for.
import { api, newKey, sessionIsOver } from "./api.js";

const owner = document.body.dataset.usuarioId ?? "";
const QUEUE = `gad:mi:cola:${owner}`;
const CONFLICTS = `gad:mi:conflictos:${owner}`;
const MAX_FIXES = 200;
const GIVE_UP_MS = 15000;
let flushing = null;
const listeners = new Set();

const read = (key) => {
  try {
    return JSON.parse(localStorage.getItem(key) ?? "[]");
  } catch {
    return [];
  }
};
const write = (key, value) => localStorage.setItem(key, JSON.stringify(value));
const notify = () => listeners.forEach((fn) => fn());

export const pending = () => read(QUEUE);
export const conflicts = () => read(CONFLICTS);
export const onChange = (fn) => listeners.add(fn);
// Told of each action the outbox sent (its answer) or saw refused ({error}), whoever started the sending: an SOS
// sent in the background, on the next tap of another button or after logging in again, is reported on the page.
const sentListeners = new Set();
export const onSent = (fn) => sentListeners.add(fn);
export const sessionEnded = sessionIsOver;

// Before outboxes were per usuario there was one for the phone, and whose its actions are is not known: they are
// not sent, but shown as not applied, for the officer to repeat what still matters. (Only on a usuario's page: the
// login page loads this module too, and has nobody to show them to.)
if (owner) {
  for (const legacy of ["gad:mi:cola"]) {
    const orphans = read(legacy);
    if (orphans.length) {
      const at = new Date().toISOString();
      const message = "guardada antes de una actualización de la aplicación; no se envió: repítala si aún hace falta";
      write(CONFLICTS, [...conflicts(), ...orphans.filter((q) => q.kind !== "posicion").map((q) => ({ key: q.key, label: q.label, message, detail: "", at }))]);
    }
    localStorage.removeItem(legacy);
  }
  localStorage.removeItem("gad:mi:conflictos"); // the old outbox's refusals: shown to whoever was on the phone then
}

// Answers to notifications waiting in this outbox, by notification id: the answer (acepto, no_puedo, leida). Read
// by the phone page's question panel and by the tray, so each sees what the other queued.
const ACK_PATH = /^\/api\/v1\/notificaciones\/(\d+)\/ack$/;
export const queuedAnswers = () =>
  new Map(pending().flatMap((q) => (q.body?.respuesta && ACK_PATH.test(q.path ?? "") ? [[Number(ACK_PATH.exec(q.path)[1]), q.body.respuesta]] : [])));

// Actions (not positions) waiting in a usuario's outbox: what logging them out would drop.
export const waitingActionsOf = (usuarioId) => read(`gad:mi:cola:${usuarioId}`).filter((item) => item.kind !== "posicion").length;

// Whose an outbox is, by name: the next officer on a shared phone is told of what waits in another's (an SOS tapped
// on a page whose session had ended waits for that session's usuario to log in again, and "Todo enviado" on the next
// one's page hid it). Kept and forgotten with the outbox.
export function nameOwner(nombre) {
  if (owner && nombre) localStorage.setItem(`gad:mi:titular:${owner}`, nombre);
}

// Other usuarios' outboxes on this phone that still hold actions: [{nombre, sos, acciones}], where `sos` is
// when each waiting SOS was tapped and `acciones` counts the rest (positions are not told).
export function othersWaiting() {
  const out = [];
  for (const key of Object.keys(localStorage)) {
    const whose = /^gad:mi:cola:(.+)$/.exec(key)?.[1];
    if (!whose || whose === owner) continue;
    const actions = read(key).filter((item) => item.kind !== "posicion");
    if (!actions.length) continue;
    const sos = actions.filter((item) => item.kind === "sos").map((item) => item.created);
    out.push({ nombre: localStorage.getItem(`gad:mi:titular:${whose}`), sos, acciones: actions.length - sos.length });
  }
  return out;
}

// Logging a usuario out leaves the phone to the next person: their outbox and refusals go, and so does what the pages
// keep that is nobody's in particular (the tareas copy, the sharing choice, this tab's resume points, the service
// worker's copy of the page). Another usuario's outbox stays: their session ended with an action (an SOS) still
// waiting, and it is sent when they log in again.
// `untilLeaving`: forget again what the page writes until it is replaced (a page about to log out); not for a page
// that goes on (the one a login over another usuario's session lands on, whose own data is the next usuario's).
// `keepOutbox`: for a usuario whose session was ended for them (a login replaced it), whose actions still go.
export async function forgetOnLogout(usuarioId, { untilLeaving = true, keepOutbox = false } = {}) {
  const forget = () => {
    // An outbox goes with what tells whose it is, the limits of the session it waits for (js/api.js) and its usuario's
    // sharing choice (mi.js): another's logout leaves them as it leaves the outbox.
    const outbox = /^gad:(?:mi:cola|mi:conflictos|mi:titular|mi:compartir|sesion):(.*)$/;
    for (const key of Object.keys(localStorage)) {
      const whose = outbox.exec(key)?.[1];
      if (key.startsWith("gad:") && (whose === undefined || (whose === String(usuarioId) && !keepOutbox))) localStorage.removeItem(key);
    }
    sessionStorage.clear();
  };
  forget();
  // The page goes on until the logout's answer replaces it: what it writes meanwhile (a position fix, a reload's copy
  // of the tareas) goes as it leaves.
  if (untilLeaving) window.addEventListener("pagehide", forget, { once: true });
  if (!("caches" in window)) return;
  const names = await caches.keys();
  // For a usuario whose session a login replaced, the page goes on as the next one's: the service worker's shell (their
  // offline page) stays, and only the kept /mi, drawn for the usuario who left, goes.
  if (!keepOutbox) await Promise.all(names.map((name) => caches.delete(name)));
  else await dropKeptPage(usuarioId);
}

// The service worker's copy of /mi, when `drop(whom it was drawn for)` says so: opened without coverage (or on a link
// that hangs) it showed that officer's tareas to whoever held the phone next.
async function dropKeptPageIf(drop) {
  if (!("caches" in window)) return;
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    const kept = await cache.match("/mi");
    const drawnFor = kept && /data-usuario-id="(\d+)"/.exec(await kept.text())?.[1];
    if (drawnFor && drop(drawnFor)) await cache.delete("/mi");
  }
}

// Drawn for `usuarioId`, whose session is over; a copy drawn for someone else since stays.
export const dropKeptPage = (usuarioId) => dropKeptPageIf((drawnFor) => drawnFor === String(usuarioId));
// Drawn for anyone but `usuarioId`, who has a session on this phone now: that copy is of a session that is over.
export const dropOthersKeptPage = (usuarioId) => dropKeptPageIf((drawnFor) => drawnFor !== String(usuarioId));

// An action the server applied changed what the ones queued after it on the same thing were taken on: `base` (see
// enqueue) becomes the answer's, or a page would take the applied action's answer for someone else's later change and
// stop showing the rest as done while they still wait to be sent.
export function rebase(path, base) {
  write(
    QUEUE,
    pending().map((q) => (q.path === path && q.base !== undefined ? { ...q, base } : q)),
  );
}

export function dismissConflict(key) {
  write(
    CONFLICTS,
    conflicts().filter((c) => c.key !== key),
  );
  notify();
}

// Queue an action and try to send everything; resolves with the API answer when sent now, or null when kept.
// `base`: what the action was taken on (a version, or when the thing last changed), for the page to tell a copy older
// than the action from a newer one.
export async function enqueue({ method, path, body, label, kind = "accion", base }) {
  const item = { key: newKey(), method, path, body, label, kind, base, created: new Date().toISOString() };
  let queue = pending();
  queue.push(item);
  const fixes = queue.filter((q) => q.kind === "posicion");
  if (fixes.length > MAX_FIXES) {
    // Past the cap the oldest fixes go first: a route thinned out beats a phone out of storage.
    const drop = new Set(fixes.slice(0, fixes.length - MAX_FIXES).map((f) => f.key));
    queue = queue.filter((q) => !drop.has(q.key));
  }
  write(QUEUE, queue);
  notify();
  const results = await flush();
  return results.get(item.key) ?? null;
}

export function flush() {
  if (!flushing) flushing = send().finally(() => (flushing = null));
  return flushing;
}

// Actions go ahead of position fixes: an SOS queued behind a shift's fixes (up to MAX_FIXES) waited for every one of
// them, and a fix answered 503 held it to the next round. Each fix carries its own time (registrado_en) and the
// server keeps the newest, so sending fixes after the actions changes nothing of where the officer is shown.
// An SOS goes ahead of everything: behind an action whose request hung (given up, it stays first and ends each round)
// it was never sent while every other request went through.
const next = () => {
  const queue = pending();
  return queue.find((q) => q.kind === "sos") ?? queue.find((q) => q.kind !== "posicion") ?? queue[0];
};

async function send() {
  const results = new Map();
  const givenUp = new Set();
  for (;;) {
    const item = next();
    if (!item || givenUp.has(item.key)) break;
    try {
      // Given up after GIVE_UP_MS and tried again later: with its Idempotency-Key, an item whose answer was lost (or is
      // still on its way) is applied once (a retry meeting the first still running waits for its answer).
      const answer = await api(item.path, { method: item.method, body: item.body, idempotencyKey: item.key, giveUpAfterMs: GIVE_UP_MS });
      results.set(item.key, answer);
    } catch (error) {
      // An SOS queued while this request hung is tried before the round ends (it goes first: see next()).
      if (error.status === undefined && item.kind !== "sos" && pending().some((q) => q.kind === "sos")) {
        givenUp.add(item.key);
        continue;
      }
      if (error.status === undefined || error.status >= 500 || error.status === 429 || error.status === 401) break; // offline or not now: keep it
      // A page of an earlier session of the same usuario (its CSRF token is the old session's): not a refusal of the
      // action, which their page of the session open now sends.
      if (error.status === 403 && error.problem?.code_hint === "csrf") break;
      // A refused position fix (an efectivo dado de baja) is nothing the officer can act on, and a phone back from a shift
      // without coverage holds up to MAX_FIXES of them: none becomes a conflict to dismiss one by one; the page says
      // the refusal where it shows the position (onSent).
      if (item.kind !== "posicion") {
        write(CONFLICTS, [...conflicts(), { key: item.key, label: item.label, message: error.message, detail: error.problem?.mensaje ?? error.problem?.detail ?? "", at: new Date().toISOString() }]);
      }
      results.set(item.key, { error });
    }
    for (const fn of sentListeners) {
      try {
        fn(item, results.get(item.key));
      } catch {
        /* a listener's error must not keep an action the server has applied in the outbox */
      }
    }
    write(
      QUEUE,
      pending().filter((q) => q.key !== item.key),
    );
    notify();
  }
  return results;
}

window.addEventListener("online", () => flush());
