// A modal form built from a list of fields: labels on every input, errors in Spanish next to each field,
// Escape or "Cancelar" closes and focus returns to the control that opened it.
import { clearFormErrors, el, showFormErrors } from "./api.js";

let counter = 0;

function input(field, id) {
  if (field.type === "select") {
    return el("select", { id, name: field.name }, ...field.options.map(([value, label]) => el("option", { value: String(value), selected: String(field.value ?? "") === String(value) }, label)));
  }
  if (field.type === "checkbox") return el("input", { id, name: field.name, type: "checkbox", checked: Boolean(field.value) });
  if (field.type === "textarea") return el("textarea", { id, name: field.name, rows: 3, maxLength: field.maxLength ?? 5000, value: field.value ?? "" });
  return el("input", {
    id,
    name: field.name,
    type: field.type ?? "text",
    value: field.value ?? "",
    required: field.required,
    autocomplete: field.autocomplete ?? "off",
    inputMode: field.inputMode,
    maxLength: field.maxLength,
  });
}

// onSubmit(values) returns a promise; a rejection with an API error shows its field errors and keeps the form open.
export function openForm({ title, fields, submitLabel = "Guardar", onSubmit, note }) {
  const opener = document.activeElement;
  const formId = `form-${++counter}`;
  const dialog = el("dialog", { class: "dialogo", "aria-labelledby": `${formId}-titulo` });
  const form = el("form", { id: formId, noValidate: true }, el("h2", { id: `${formId}-titulo` }, title));
  if (note) form.append(el("p", { class: "nota" }, note));
  form.append(el("p", { class: "form-alerta error", role: "alert", hidden: true }));
  for (const field of fields) {
    const id = `${formId}-${field.name}`;
    const control = input(field, id);
    if (field.type === "checkbox") form.append(el("div", { class: "casilla" }, control, el("label", { for: id }, field.label)));
    else form.append(el("label", { for: id }, field.label), control);
    if (field.help) {
      const help = el("p", { class: "ayuda", id: `${id}-ayuda` }, field.help);
      control.setAttribute("aria-describedby", help.id);
      form.append(help);
    }
  }
  const cancel = el("button", { type: "button" }, "Cancelar");
  form.append(el("div", { class: "acciones" }, el("button", { type: "submit" }, submitLabel), cancel));
  dialog.append(form);
  document.body.append(dialog);
  const close = () => {
    dialog.close();
    dialog.remove();
    if (opener instanceof HTMLElement) opener.focus();
  };
  cancel.addEventListener("click", close);
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    close();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors(form);
    const values = {};
    for (const field of fields) {
      const control = form.elements.namedItem(field.name);
      if (field.type === "checkbox") values[field.name] = control.checked;
      else values[field.name] = control.value.trim();
    }
    try {
      await onSubmit(values);
      close();
    } catch (error) {
      showFormErrors(form, error);
    }
  });
  dialog.showModal();
  form.querySelector("input, select, textarea")?.focus();
  return dialog;
}

// Blank strings become null (cleared) or are left out (create), numbers become numbers.
export function clean(values, { numbers = [], omitBlank = false } = {}) {
  const out = {};
  for (const [key, value] of Object.entries(values)) {
    if (value === "") {
      if (!omitBlank) out[key] = null;
      continue;
    }
    out[key] = numbers.includes(key) && typeof value === "string" && /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  }
  return out;
}
