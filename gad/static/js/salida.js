// "Cerrar sesión" (on every page, and "Cerrar la sesión abierta" on the login page): the usuario is told before
// actions still waiting for coverage are dropped, and what the pages kept for them is forgotten (cola.forgetOnLogout).
//
// Whose data goes is decided by who the server will log out, asked just before: the form's usuario when they are
// the one signed in, or when nobody is (their session ended elsewhere, and the server has nobody to name). A page
// left from an earlier session while someone else is signed in forgets nothing: its usuario's SOS may still be
// waiting to be sent when they log in again, and the server answers that page with a question, not a logout.
import * as cola from "./cola.js";

async function signedIn() {
  try {
    const response = await fetch("/api/v1/users/me", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (response.status === 401) return null;
    return response.ok ? (await response.json()).id : undefined;
  } catch {
    return undefined; // not known (no coverage): nothing is forgotten, and the logout itself will not go through
  }
}

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
    try {
      const now = await signedIn();
      if (now === null || now === whose) await cola.forgetOnLogout(whose);
    } finally {
      form.submit(); // a programmatic submit does not come back through this listener
    }
  });
}
