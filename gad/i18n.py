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
}


def mensaje(field: str, tipo: str, ctx: dict[str, Any] | None = None) -> str:
    """Spanish text for one field error; ``field`` is the last part of the path (``body.codigo`` → ``codigo``)."""
    name = field.rsplit(".", 1)[-1]
    if tipo in ("string_pattern_mismatch", "value_error", "less_than_equal", "greater_than_equal") and name in _POR_CAMPO:
        return _POR_CAMPO[name]
    if name == "current_password" or (name == "email" and tipo == "value_error"):
        return _POR_CAMPO[name]
    template = _POR_TIPO.get(tipo, "Valor no válido.")
    try:
        return template.format(**(ctx or {}))
    except (KeyError, IndexError):
        return template.split(":")[0] + "."
