"""Spanish wording of validation errors, shown next to form fields (the API keeps pydantic's English ``message``)."""

from __future__ import annotations

from typing import Any

# By field: a rule the generic wording cannot explain (the pattern a codigo must match, what lat/lng are).
_POR_CAMPO = {
    "codigo": "Solo MAYÚSCULAS, cifras, «-» y «_»; entre 3 y 20 caracteres (p. ej. PAT-0001).",
    "email": "Escriba un correo válido, p. ej. nombre@dominio.es.",
    "lat": "Latitud entre -90 y 90.",
    "lng": "Longitud entre -180 y 180.",
    "ubicacion_lat": "Latitud entre -90 y 90 (junto con la longitud).",
    "ubicacion_lng": "Longitud entre -180 y 180 (junto con la latitud).",
    "current_password": "Falta la contraseña actual o no es correcta.",
}

_POR_TIPO = {
    "missing": "Este campo es obligatorio.",
    "null_forbidden": "Este campo no puede quedar vacío.",
    "string_too_short": "Demasiado corto: al menos {min_length} caracteres.",
    "string_too_long": "Demasiado largo: como máximo {max_length} caracteres.",
    "too_short": "Debe tener al menos {min_length} elementos.",
    "too_long": "Como máximo {max_length} elementos.",
    "greater_than_equal": "Debe ser mayor o igual que {ge}.",
    "less_than_equal": "Debe ser menor o igual que {le}.",
    "greater_than": "Debe ser mayor que {gt}.",
    "less_than": "Debe ser menor que {lt}.",
    "int_parsing": "Escriba un número entero.",
    "int_from_float": "Escriba un número entero.",
    "float_parsing": "Escriba un número (use punto decimal).",
    "float_type": "Escriba un número (use punto decimal).",
    "int_type": "Escriba un número entero.",
    "finite_number": "Escriba un número.",
    "bool_parsing": "Valor no válido: sí o no.",
    "bool_type": "Valor no válido: sí o no.",
    "nul_character": "Quite el carácter nulo (NUL) del texto.",
    "enum": "Elija uno de los valores de la lista.",
    "literal_error": "Elija uno de los valores de la lista.",
    "datetime_parsing": "Fecha y hora no válidas (p. ej. 2026-12-01T08:00+01:00).",
    "datetime_from_date_parsing": "Fecha y hora no válidas (p. ej. 2026-12-01T08:00+01:00).",
    "timezone_aware": "Indique la zona horaria (p. ej. +01:00).",
    "string_pattern_mismatch": "Formato no válido.",
    "extra_forbidden": "Campo no admitido.",
    "value_error": "Valor no válido.",
    "string_type": "Escriba un texto.",
    "password_unchanged": "La nueva contraseña debe ser distinta de la actual.",
    # Rules of GAD's own (not pydantic's): the services name them by these types.
    "unknown_id": "No existe o no está activo.",
    "type_error": "El cuerpo de la petición debe ser un objeto JSON.",
    "repeated": "Aparece más de una vez con valores distintos: indíquelo una sola vez.",
    "etag": 'Versión no válida: se espera un número entre comillas, p. ej. "3".',
    "idempotency_key": "Clave de idempotencia no válida.",
    "idempotency_mismatch": "Esa clave de idempotencia ya se usó con otra petición.",
    "date": "Fecha no válida: AAAA-MM-DD, o fecha y hora con zona (p. ej. 2026-12-01T08:00+01:00).",
    "range": "El fin debe ser posterior al inicio.",
    "schedule": "El fin debe ser posterior al inicio.",
    "location": "Latitud y longitud van juntas: indique las dos.",
    "managed_state": "«En tarea» lo pone la asignación a una tarea en curso.",
}


def mensaje(field: str, tipo: str, ctx: dict[str, Any] | None = None) -> str:
    """Spanish text for one field error; ``field`` is the last part of the path (``body.codigo`` → ``codigo``)."""
    if ctx and "mensaje" in ctx:  # the rule said it in its own words (schemas.common.rule_broken)
        return str(ctx["mensaje"])
    name = field.rsplit(".", 1)[-1]
    if tipo in ("string_too_short", "too_short") and (ctx or {}).get("min_length") == 1:
        return "No puede quedar vacío." if tipo == "string_too_short" else "Debe tener al menos un elemento."
    if tipo in ("string_pattern_mismatch", "value_error", "less_than_equal", "greater_than_equal") and name in _POR_CAMPO:
        return _POR_CAMPO[name]
    if name == "current_password" or (name == "email" and tipo == "value_error"):
        return _POR_CAMPO[name]
    template = _POR_TIPO.get(tipo, "Valor no válido.")
    try:
        return template.format(**(ctx or {}))
    except (KeyError, IndexError):
        return template.split(":")[0] + "."


# A page a person opened in a browser that cannot be shown: title and what to do, by HTTP status.
_PAGINA_ERROR = {
    400: ("Petición no válida", "La página recibió datos que no entiende. Vuelva atrás e inténtelo de nuevo."),
    403: ("Sin permiso", "Su usuario no tiene permiso para ver esta página. Si cree que debería, hable con un administrador."),
    404: ("Página no encontrada", "Esta dirección no existe en GAD. Compruébela o vuelva al tablero."),
    405: ("Acción no admitida", "Esta página no admite esa acción. Vuelva atrás e inténtelo desde sus botones."),
    413: ("Demasiados datos", "Lo enviado es demasiado grande."),
    429: ("Demasiados intentos", "Espere un momento y vuelva a intentarlo."),
    500: ("Error inesperado", "Algo falló en el servidor y ya quedó registrado. Vuelva a intentarlo."),
    503: ("Servicio no disponible", "El servicio no está disponible ahora. Vuelva a intentarlo en unos segundos."),
}
# A form sent with a token its session no longer has: a second tab that logged in or out meanwhile.
PAGINA_CADUCADA = (
    "La página había caducado",
    "Se abrió antes de que su sesión cambiara (en otra pestaña, o por inactividad). Recárguela e inténtelo de nuevo.",
)


def pagina_error(status: int) -> tuple[str, str]:
    """Spanish title and explanation of an error page for ``status``."""
    return _PAGINA_ERROR.get(status, (f"Error {status}", "No se pudo completar la petición. Vuelva atrás e inténtelo de nuevo."))
