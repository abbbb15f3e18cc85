"""Shared schema pieces: strict base models, pagination, problem documents, normalised strings."""

import functools
import re
import types
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Generic, TypeVar, Union, Unpack, get_args, get_origin

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gad.text import canonical_dni, canonical_email, canonical_unidad, is_blank, strip_blank
from gad.vocab import ID_MAX, TIEMPO_MAX, TIEMPO_MIN

T = TypeVar("T")


def schema_config(**settings: Unpack[ConfigDict]) -> ConfigDict:
    """Every GAD schema's configuration: ``settings`` plus validators built on first use, not at import
    (``defer_build``), and no check of field names against pydantic's protected ``model_`` prefixes. That check
    runs at import for every field of every class (an inherited field again in each subclass) and was a fifth of
    creating an event payload class; no GAD field starts with ``model_`` (tests/test_startup.py)."""
    return ConfigDict(defer_build=True, protected_namespaces=(), **settings)


# Before validators: the value is normalised first, so min_length/max_length judge what is stored ("     " is
# empty, not five characters). Anything but a string passes untouched for the str schema to refuse.
def _strip(value: Any) -> Any:
    return strip_blank(value) if isinstance(value, str) else value


def _collapse(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    words = (strip_blank(word) for word in value.split())
    return " ".join(word for word in words if word)


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    # Internal domains such as gad.local are legitimate here.
    value = canonical_email(value)
    if not _EMAIL.match(value):
        raise ValueError("must be an e-mail address such as nombre@dominio.es")
    if any(is_blank(character) for character in value):
        # A zero-width or other invisible character inside makes a second address that reads as the first.
        raise ValueError("must not contain invisible characters")
    return value


def _dni(value: Any) -> Any:
    return canonical_dni(value) if isinstance(value, str) else value


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_email)]
Text = Annotated[str, BeforeValidator(_strip)]


def _blank_is_none(value: Any) -> Any:
    if isinstance(value, str):
        return strip_blank(value) or None
    return value


# An optional text: left blank (a form's untouched input, spaces) it is no value, stored as null as if omitted, never
# an empty string that lists and defaults would then treat as a value.
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_none)]


def _unidad(value: Any) -> Any:
    return (canonical_unidad(value) or None) if isinstance(value, str) else value


# A unidad, sent to be stored or to filter or address by: in its one spelling (gad.text.canonical_unidad); blank is none.
Unidad = Annotated[Annotated[str, Field(max_length=100)] | None, BeforeValidator(_unidad)]
Dni = Annotated[str, BeforeValidator(_dni)]
Name = Annotated[str, BeforeValidator(_collapse)]
Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Lng = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
TIME_WINDOW = f"between {TIEMPO_MIN:%Y-%m-%dT%H:%M:%SZ} and {TIEMPO_MAX - timedelta(seconds=1):%Y-%m-%dT%H:%M:%SZ} (UTC)"


def _in_time_window(value: datetime) -> datetime:
    # Compared as aware datetimes (no conversion): 9999-12-31T23:59:59-14:00 would overflow astimezone().
    if not TIEMPO_MIN <= value < TIEMPO_MAX:
        raise ValueError(f"must be {TIME_WINDOW}")
    # The same instant in UTC, as it is stored: an offset Python accepts (up to ±23:59) may be past PostgreSQL's
    # (±15:59), which refused it as "out of range" naming no field.
    return value.astimezone(UTC)


_A_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _written_out(value: Any) -> Any:
    # pydantic's lax mode reads a number, or a text of digits, as seconds since 1970: a client's Unix time (or a
    # number sent by mistake) was stored as an instant nobody wrote, though every instant needs its offset.
    if (isinstance(value, int | float) and not isinstance(value, bool)) or (isinstance(value, str) and _A_NUMBER.fullmatch(value)):
        raise PydanticCustomError("datetime_parsing", "Input should be an ISO 8601 date and time with an offset, not a number")
    return value


RowId = Annotated[int, Field(ge=1, le=ID_MAX)]  # an id a request names: larger ones cannot exist
# Every datetime a client sends (body, form or query): written out with an offset, inside the stored window, then in UTC.
UtcDatetime = Annotated[
    AwareDatetime, BeforeValidator(_written_out), AfterValidator(_in_time_window), Field(description=f"ISO 8601 with offset, {TIME_WINDOW}")
]


def rule_broken(message: str, mensaje: str, field: str | None = None) -> PydanticCustomError:
    """A rule a validator checks, with the Spanish a form shows beside the field (``mensaje``). A rule across
    fields is checked on the whole model, which pydantic names by its parent: ``field`` names the one to fix
    (errors.pydantic_errors appends it to the path), so the form shows the reason where the person can act."""
    ctx = {"mensaje": mensaje} | ({"path": field} if field else {})
    return PydanticCustomError("value_error", message, ctx)


def check_location(lat: float | None, lng: float | None, lat_field: str, lng_field: str) -> None:
    """A position is both coordinates or neither; the error names the one missing."""
    if (lat is None) != (lng is None):
        raise rule_broken(
            f"{lat_field} and {lng_field} go together: send both or neither",
            "Latitud y longitud van juntas: indique las dos.",
            lng_field if lng is None else lat_field,
        )


def _no_nul(value: Any, path: str = "") -> None:
    # PostgreSQL text cannot hold NUL; refuse it here (422) instead of failing in the database (500). The path
    # travels in the error's context: a model-level check has no field of its own (errors.pydantic_errors).
    if isinstance(value, str) and "\x00" in value:
        raise PydanticCustomError("nul_character", "{where} must not contain NUL characters", {"where": path or "value", "path": path})
    if isinstance(value, dict):
        for key, item in value.items():
            inside = f"{path}.{key}" if path else str(key)
            _no_nul(key, inside)  # a key is named by itself: its parent would name a whole object
            _no_nul(item, inside)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_nul(item, f"{path}.{index}" if path else str(index))


# What a JSON body's value must be for a field of each Python type; pydantic's lax mode, right for forms and query
# strings, would turn ``"3"``, ``3.0`` and ``true`` into the integer 3 or 1, and ``1`` or ``"yes"`` into True.
_JSON_KINDS: dict[Any, tuple[tuple[type, ...], str, str]] = {
    int: ((int,), "int_type", "Input should be a valid integer"),
    float: ((int, float), "float_type", "Input should be a valid number"),
    bool: ((bool,), "bool_type", "Input should be a valid boolean"),
}
_SEQUENCES = (list, set, frozenset, tuple)


def _json_kind(annotation: Any) -> tuple[str, Any] | None:
    """How a JSON body's value for a field of ``annotation`` is checked: ``("scalar", int)`` for an int, float or
    bool field (possibly optional or annotated), ``("items", int)`` for a homogeneous sequence of one, ``("object",
    Model)`` for a nested request model, ``("objects", Model)`` for a sequence of them; None for any other field."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _json_kind(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        present = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _json_kind(present[0]) if len(present) == 1 else None
    if origin in _SEQUENCES:
        args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
        inner = _json_kind(args[0]) if len(args) == 1 else None
        if inner is None or inner[0] not in ("scalar", "object"):
            return None
        return ("items" if inner[0] == "scalar" else "objects", inner[1])
    if annotation in _JSON_KINDS:
        return ("scalar", annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("object", annotation)
    return None


@functools.cache
def _json_fields(model: type[BaseModel]) -> dict[str, tuple[str, Any]]:
    """The body keys of ``model``'s fields that ``json_type_errors`` checks, worked out once per model."""
    kinds = {}
    for name, field in model.model_fields.items():
        kind = _json_kind(field.annotation)
        if kind is not None:
            key = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
            kinds[key or name] = kind
    return kinds


def json_type_errors(model: type[BaseModel], body: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    """(path in the body, error type, message) for each value of a JSON ``body`` whose JSON type is not its field's:
    a string or a boolean where a number goes, a number where a boolean goes. ``bool`` is an ``int`` to Python,
    so the types are compared exactly. Null, absent and otherwise shaped values are left to the model."""
    errors = []
    for key, (how, of) in _json_fields(model).items():
        value = body.get(key)
        path = f"{prefix}{key}"
        if how == "object":
            if isinstance(value, dict):
                errors += json_type_errors(of, value, f"{path}.")
            continue
        if how == "objects":
            for index, item in enumerate(value if isinstance(value, list) else []):
                if isinstance(item, dict):
                    errors += json_type_errors(of, item, f"{path}.{index}.")
            continue
        if value is None or (how == "items" and not isinstance(value, list)):
            continue
        allowed, kind, message = _JSON_KINDS[of]
        for item_path, item in [(f"{path}.{index}", item) for index, item in enumerate(value)] if how == "items" else [(path, value)]:
            if type(item) not in allowed:
                errors.append((item_path, kind, message))
    return errors


# The validation context of input known to hold no NUL anywhere (``gad.blueprints.http.parse_json`` checks a JSON
# body's bytes): the walk over every key and value that looks for one is then skipped.
NUL_FREE: dict[str, bool] = {"nul_free": True}


class _ClientInput(BaseModel):
    """Anything a client sends: unknown fields are errors (typos never silently do nothing), no NUL bytes."""

    # Validators are built on first use, not at import: a worker starts faster and never builds those it never needs.
    model_config = schema_config(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _reject_nul(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not NUL_FREE:
            _no_nul(data)
        return data


class InModel(_ClientInput):
    """Request bodies."""

    model_config = schema_config(extra="forbid", str_max_length=10_000)


def _describe_null_as_validated(schema: dict[str, Any], cls: type[Any]) -> None:
    """A PatchModel's JSON schema says what validation does: a field outside ``nullable`` is never null."""
    nullable: frozenset[str] = getattr(cls, "nullable", frozenset())
    for name, prop in schema.get("properties", {}).items():
        if name in nullable or "anyOf" not in prop:
            continue
        kinds = [kind for kind in prop.pop("anyOf") if kind != {"type": "null"}]
        if len(kinds) == 1:
            prop.update(kinds[0])
        else:
            prop["anyOf"] = kinds
        if "default" in prop and prop["default"] is None:
            del prop["default"]  # omitted means "keep", not null


class PatchModel(InModel):
    """Partial updates: an omitted field keeps its value; ``null`` is accepted only for the fields named in
    ``nullable`` (it clears them). Every other field holds a value the row cannot lack, so ``null`` is a 422 naming
    the field — decided here, once, so a new Patch schema cannot forget it. The attributes stay ``X | None``: an
    omitted field reads as None in Python; services apply ``model_dump(exclude_unset=True)``."""

    nullable: ClassVar[frozenset[str]] = frozenset()
    model_config = schema_config(extra="forbid", str_max_length=10_000, json_schema_extra=_describe_null_as_validated)

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_nullable(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise PydanticCustomError("null_forbidden", "may not be null: omit the field to keep its value")
        return value


class QueryModel(_ClientInput):
    """Query strings."""


def not_below(lower: str, message: str, mensaje: str) -> Any:
    """A range's upper bound checked against ``lower`` (a field declared before it): reversed, the range is a mistake
    to say (a 422 naming the upper bound), never an empty answer that looks like "nothing happened". Assign it in a
    class body: ``_checked = field_validator("upper")(not_below("lower", ...))``."""

    def check(value: Any, info: ValidationInfo) -> Any:
        bound = info.data.get(lower)
        if value is not None and bound is not None and value < bound:
            raise rule_broken(message, mensaje)
        return value

    return staticmethod(check)


class DateWindow(QueryModel):
    """A window of instants a list or an export is read over, ``hasta`` not before ``desde``."""

    desde: UtcDatetime | None = None
    hasta: UtcDatetime | None = None

    _not_before_desde = field_validator("hasta")(not_below("desde", "must not be before desde", "«Hasta» no puede ser anterior a «desde»."))


class NoQuery(QueryModel):
    """The query of an endpoint that takes no parameters: any one is unknown (``blueprints.http.no_query``)."""


class NoBody(InModel):
    """The body of an action that takes none: only ``{}`` (clients that always send JSON) is accepted as it
    (``blueprints.http.no_input``)."""


class OutModel(BaseModel):
    model_config = schema_config(from_attributes=True)


class Page(OutModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PageQuery(QueryModel):
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=ID_MAX)  # no list holds more rows than a table has ids

    @model_validator(mode="before")
    @classmethod
    def _skip_is_offset(cls, data: Any) -> Any:
        # GRUPO_GAD's clients page with ``skip``: the same number under its older name.
        if isinstance(data, dict) and "skip" in data:
            data = dict(data)
            skip = data.pop("skip")
            if "offset" in data and str(data["offset"]) != str(skip):
                raise rule_broken(
                    "send offset or skip (its older name), not both with different values",
                    "Indique offset o skip (su nombre antiguo), no los dos con valores distintos.",
                    "offset",
                )
            data["offset"] = skip
        return data


class FieldError(BaseModel):
    model_config = schema_config()

    field: str
    message: str
    type: str
    mensaje: str | None = Field(None, description="The same error in Spanish, as the dashboard shows it")


class Problem(BaseModel):
    """RFC 9457 problem document returned for every error."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str | None = None
    errors: list[FieldError] | None = None

    model_config = schema_config(extra="allow")


class Health(BaseModel):
    model_config = schema_config()

    status: str
    timestamp: datetime
    uptime: float
    version: str


class Readiness(BaseModel):
    model_config = schema_config()

    status: str
    checks: dict[str, Any]
