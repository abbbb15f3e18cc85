// "Cerrar sesión" on every page: the usuario is told before actions still waiting for coverage are dropped, and
// what the pages kept for them is forgotten before the server ends the session (see cola.forgetOnLogout).
import * as cola from "./cola.js";

const form = document.querySelector("form.logout");
form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const waiting = cola.pending().filter((item) => item.kind !== "posicion").length;
  const question =
    waiting === 1
      ? "Hay 1 acción sin enviar: si cierra la sesión no se enviará. ¿Cerrar la sesión?"
      : `Hay ${waiting} acciones sin enviar: si cierra la sesión no se enviarán. ¿Cerrar la sesión?`;
  if (waiting && !window.confirm(question)) return;
  try {
    await cola.forgetOnLogout();
  } finally {
    form.submit(); // a programmatic submit does not come back through this listener
  }
});
