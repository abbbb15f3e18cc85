// "Nueva emergencia": a side panel (not modal, so the map stays clickable) opened by a button or Alt+E.
// Place by map click, typed coordinates or the browser's position; the result says who goes and how far,
// or that nobody was free and why, with the nearest efectivos to assign by hand.
import { api, clearFormErrors, el, newKey, showFormErrors, DISPONIBILIDAD, age } from "./api.js";

export function setupEmergencyDialog({ view, efectivoNombre }) {
  const dialog = document.getElementById("dialogo-emergencia");
  const form = document.getElementById("form-emergencia");
  const opener = document.getElementById("abrir-emergencia");
  const result = document.getElementById("emg-resultado");
  const lat = form.elements.namedItem("lat");
  const lng = form.elements.namedItem("lng");
  let key = newKey();

  const open = () => {
    if (!dialog.open) dialog.show();
    result.hidden = true;
    key = newKey();
    lat.focus();
  };
  const close = () => {
    dialog.close();
    view?.clearPick();
    opener.focus();
  };
  opener.addEventListener("click", open);
  document.getElementById("emg-cancelar").addEventListener("click", close);
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
  document.addEventListener("keydown", (event) => {
    if (event.altKey && (event.key === "e" || event.key === "E" || event.code === "KeyE")) {
      event.preventDefault();
      open();
    }
  });
  // A click on the map (see board.js) places the emergency there, opening the panel if it was closed.
  const pick = (la, ln) => {
    if (!dialog.open) open();
    lat.value = la.toFixed(6);
    lng.value = ln.toFixed(6);
  };
  document.getElementById("emg-mi-posicion").addEventListener("click", () => {
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        lat.value = pos.coords.latitude.toFixed(6);
        lng.value = pos.coords.longitude.toFixed(6);
        view?.focus(pos.coords.latitude, pos.coords.longitude);
      },
      () => showFormErrors(form, { message: "El navegador no dio su posición: haga clic en el mapa o escriba las coordenadas.", problem: null }),
      { enableHighAccuracy: true, timeout: 10000 },
    );
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    const body = {
      lat: Number(String(lat.value).replace(",", ".")),
      lng: Number(String(lng.value).replace(",", ".")),
      tipo: form.elements.namedItem("tipo").value,
      prioridad: Number(form.elements.namedItem("prioridad").value),
    };
    // A blank coordinate is missing, not zero.
    if (lat.value.trim() === "") delete body.lat;
    if (lng.value.trim() === "") delete body.lng;
    // The API places an emergency sent without a position at the caller's last known one (an officer's SOS from a
    // phone without a fix); the board's operator says where, always.
    if (body.lat === undefined && body.lng === undefined) {
      const mensaje = "Indique dónde: haga clic en el mapa, escriba las coordenadas o use su posición.";
      showFormErrors(form, { message: "Falta la posición de la emergencia.", problem: { errors: [{ field: "lat", mensaje }, { field: "lng", mensaje }] } });
      return;
    }
    const descripcion = form.elements.namedItem("descripcion").value.trim();
    if (descripcion) body.descripcion = descripcion;
    const button = document.getElementById("emg-enviar");
    button.disabled = true;
    try {
      // The same key on a retry (double click, lost answer) replays the first emergency instead of raising two.
      const { data } = await api("/api/v1/tasks/emergency", { method: "POST", body, idempotencyKey: key });
      key = newKey();
      // Launched: the form is emptied, so pressing the button again (to be sure, or by habit) cannot send a second
      // emergency, and a second officer, to the same place. A new one is placed afresh.
      form.reset();
      view?.clearPick();
      await showResult(data);
    } catch (error) {
      showFormErrors(form, error);
    } finally {
      button.disabled = false;
    }
  });

  async function showResult(data) {
    const t = data.tarea;
    const link = el("a", { href: `/tareas/${t.id}` }, t.codigo);
    result.hidden = false;
    if (!data.sin_asignar) {
      result.replaceChildren(
        el("h3", {}, "Emergencia creada: ", link),
        el("ul", { class: "asignados-emergencia" }, ...data.asignados.map((a) => el("li", {}, `${efectivoNombre(a.efectivo_id)} va en camino — a ${Math.round(a.distancia_m)} m`))),
      );
      return;
    }
    const list = el("ul", { class: "manual" });
    result.replaceChildren(
      el("h3", {}, "Emergencia creada: ", link),
      el("p", { class: "error", role: "alert" }, `Nadie libre: ${data.motivo_sin_asignar ?? "ningún efectivo disponible"}. Asigne a mano:`),
      list,
    );
    try {
      const { data: cercanos } = await api(`/api/v1/efectivos/cercanos?lat=${t.ubicacion_lat}&lng=${t.ubicacion_lng}&radio_m=100000&limit=8&incluir_antiguas=true`);
      if (!cercanos.length) list.append(el("li", {}, "No hay efectivos disponibles con posición conocida."));
      for (const c of cercanos) {
        const button = el("button", { type: "button" }, `Asignar ${c.efectivo.nombre}`);
        button.addEventListener("click", async () => {
          button.disabled = true;
          try {
            await api(`/api/v1/tasks/${t.id}/efectivos`, { method: "POST", body: { efectivo_ids: [c.efectivo.id] } });
            button.replaceWith(el("span", { class: "ok" }, `${c.efectivo.nombre} asignado`));
          } catch (error) {
            button.disabled = false;
            button.after(el("span", { class: "error" }, ` ${error.message}`));
          }
        });
        list.append(el("li", {}, `${c.efectivo.nombre} · ${DISPONIBILIDAD[c.efectivo.estado_disponibilidad]} · a ${Math.round(c.distancia_m)} m · posición ${age(c.efectivo.posicion_en)} `, button));
      }
    } catch (error) {
      list.append(el("li", {}, error.message));
    }
  }
  return { open, pick };
}
