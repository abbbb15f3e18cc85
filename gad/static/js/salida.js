// "Cerrar sesión" (on every page, and "Cerrar la sesión abierta" on the login page): the usuario is told before
// actions still waiting for coverage are dropped, and what the pages kept for them is forgotten (cola.forgetOnLogout).
//
// Whose data goes is decided by who the server will log out, asked just before: the form's usuario when they are
// the one signed in, or when nobody is (their session ended elsewhere, and the server has nobody to name). A page
// left from an earlier session while someone else is signed in forgets nothing: its usuario's SOS may still be
// waiting to be sent when they log in again, and the server answers that page with a question, not a logout.
import * as cola from "./cola.js";

const UNREACHABLE = Symbol("unreachable");

async function signedIn() {
  // Bounded: on a connection that hangs the button must still log out (the server, if reached, ends the session).
  // A controller and a timer, not AbortSignal.timeout, which older phones' browsers lack.
  const giveUp = new AbortController();
  const timer = setTimeout(() => giveUp.abort(), 4000);
  try {
    const response = await fetch("/api/v1/users/me", { headers: { Accept: "application/json" }, credentials: "same-origin", signal: giveUp.signal });
    if (response.status === 401) return null;
    return response.ok ? (await response.json()).id : undefined;
  } catch (error) {
    // No network at all: the logout would not reach the server either. Merely slow (the 4 s ran out): the logout
    // goes, and if it ends the session the login page forgets on the server's word.
    return error?.name === "AbortError" ? undefined : UNREACHABLE;
  } finally {
    clearTimeout(timer);
  }
}

// The page a logout (or a login over another usuario's session) lands on names whom the server logged out
// (data-olvidar): their data goes now, whatever the page before could or could not forget (it had no answer in time,
// wrote more while the logout was on its way, or was a login form that never asked).
const { olvidar, relevado } = document.body.dataset;
if (olvidar) cola.forgetOnLogout(Number(olvidar), { untilLeaving: false });
if (relevado) cola.forgetOnLogout(Number(relevado), { untilLeaving: false, keepOutbox: true });
// Any page the server drew just now (not the service worker's copy, which has no event-log head) for a usuario: a kept
// /mi drawn for someone else is of a session that is over (a login after it idled out names nobody to forget), and a
// link that hangs would show it to this usuario.
const { usuarioId, lastEventId } = document.body.dataset;
if (usuarioId && lastEventId !== undefined) cola.dropOthersKeptPage?.(usuarioId);

for (const form of document.querySelectorAll("form.logout")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const whose = Number(form.dataset.usuarioId ?? document.body.dataset.usuarioId);
    const waiting = cola.waitingActionsOf(whose);
    const question =
      waiting === 1
        ? "Hay 1 acción sin enviar: si cierra la sesión no se enviará. ¿Cerrar la sesión?"
        : `Hay ${waiting} acciones sin enviar: si cierra la sesión no se enviarán. ¿Cerrar la sesión?`;
    if (waiting && !window.confirm(question)) return;
    const now = await signedIn();
    if (now === UNREACHABLE) {
      // Submitting would show the browser's own offline page, end nothing on the server and forget nothing here,
      // and the actions just said to be dropped would be sent once coverage came back: say so, and do nothing.
      window.alert("Sin cobertura: la sesión no se ha cerrado y no se ha borrado nada. Vuelva a intentarlo cuando haya red.");
      return;
    }
    try {
      if (now === null || now === whose) await cola.forgetOnLogout(whose);
    } finally {
      form.submit(); // a programmatic submit does not come back through this listener
    }
  });
}
