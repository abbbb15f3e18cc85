"""HTTP helpers shared by the blueprints: body/query parsing, JSON responses, ETag/If-Match, idempotency."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import Headers
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from gad.errors import MalformedRequest, UnsupportedMediaType, ValidationProblem, field_error, pydantic_errors
from gad.reqctx import current_flask_app, current_request
from gad.schemas.common import NUL_FREE, NoBody, NoQuery, json_type_errors
from gad.security import current_user
from gad.services import idempotency
from gad.services.common import WEAK_ETAG

M = TypeVar("M", bound=BaseModel)
IDEMPOTENCY_HEADER = "Idempotency-Key"
_MAX_KEY_LENGTH = 200
_ETAG = re.compile(r'"([0-9]{1,18})"')  # a version: a row's counter, far below 10**18
# No GAD body nests beyond 3 levels. A bound far below Python's recursion limit keeps every recursive
# walk that follows (validation, the NUL check) safe; the size is bounded by MAX_CONTENT_LENGTH (413).
MAX_JSON_DEPTH = 32


def _nests_deeper_than(payload: Any, limit: int) -> bool:
    """Iterative, so that the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterable[Any] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def read_body_first() -> None:
    """App ``before_request`` hook: a request's body is read in full before anything queries the database.

    Authentication opens the request's transaction (the caller's row) before the view parses the body; a phone on
    a bad link whose body took longer to arrive than ``DB_IDLE_IN_TRANSACTION_TIMEOUT_MS`` had its session ended
    by PostgreSQL under it, and a valid write was answered 503 and lost. Read here, the body waits in memory
    (bounded by MAX_CONTENT_LENGTH; a larger declared one is refused when parsed, after authentication), and a
    body cut short is a 400 (the client went away), not a database failure."""
    request_ = current_request()
    if request_.method not in _BODY_METHODS:
        return
    declared = request_.content_length
    # The environ, not request.headers: the same value without building the headers view.
    environ = request_.environ
    transfer = environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    chunked = "chunked" in transfer
    content_encoding = environ.get("HTTP_CONTENT_ENCODING")
    coded = content_encoding is not None or transfer not in ("", "chunked")
    if coded and (declared or chunked) and request_.routing_exception is None:  # an unknown path or method: its 404/405
        _refuse_compressed(content_encoding or "", transfer)
    limit = current_flask_app().config.get("MAX_CONTENT_LENGTH")
    if (declared and (limit is None or declared <= limit)) or (declared is None and chunked):
        request_.get_data(cache=True)


_PLAIN_CODINGS = frozenset({"", "identity", "chunked"})


def _refuse_compressed(content_encoding: str, transfer_encoding: str) -> None:
    """Nothing here decodes a compressed body: read as it came, a gzip body was "not valid JSON" and one of plain text
    declared as gzip was taken as it was. gunicorn takes a chunked body's chunking off, and nothing else (``gzip,
    chunked`` as a transfer coding is the same body). 415 is the status RFC 9110 gives an unsupported content coding."""
    codings = [c.strip() for c in f"{content_encoding},{transfer_encoding}".lower().split(",")]
    unsupported = [c for c in codings if c not in _PLAIN_CODINGS]
    if unsupported:
        raise UnsupportedMediaType(
            f"Content-Encoding {', '.join(unsupported)} is not supported: send the body uncompressed.",
            headers={"Accept-Encoding": "identity"},
            mensaje="El servidor no acepta cuerpos comprimidos: envíelo sin comprimir.",
        )


def _nul_free(body: bytes) -> bool:
    """Whether a JSON body that parsed cannot hold a NUL character: JSON writes one only as the escape ``\\u0000`` (a raw
    control character does not parse), and a body in UTF-16 or UTF-32, which the parser also reads, has zero bytes
    (its ``{`` has). Two byte searches instead of a walk over every key and value (a create's 17 k instructions)."""
    return b"\x00" not in body and b"\\u0000" not in body


def parse_json(model: type[M]) -> M:
    """Validate the JSON body against ``model``: 415 when it is declared as something else, 400 when it is not JSON,
    422 with field paths when invalid."""
    # A body with no Content-Type is read as JSON, as GRUPO_GAD (FastAPI) read it: its clients' scripts post
    # json.dumps(...) bare. One declared as another type (a form, text) was not meant as this JSON.
    request_ = current_request()  # the request itself, not the proxy each use would resolve again
    if request_.mimetype and not request_.is_json:
        raise UnsupportedMediaType(f"Send the body as JSON with 'Content-Type: application/json', not {request_.mimetype}.")
    try:
        payload = request_.get_json(force=True)
    except BadRequest:
        if request_.content_length is None and getattr(request_.stream, "is_exhausted", False):
            # A streamed (chunked) body is cut at MAX_CONTENT_LENGTH by werkzeug without a word, and what was read
            # then fails to parse: it was too large, as a sized one would have been told before it was read.
            raise RequestEntityTooLarge() from None
        raise MalformedRequest("The request body is not valid JSON.") from None
    except RecursionError:
        raise MalformedRequest(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.") from None
    # Each level of nesting opens a bracket: a body with fewer than the limit cannot nest past it, and is not walked.
    body = request_.get_data()
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _nests_deeper_than(payload, MAX_JSON_DEPTH):
        raise MalformedRequest(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.")
    if not isinstance(payload, dict):
        raise ValidationProblem("The JSON body must be an object.", errors=[{"field": "body", "message": "must be a JSON object", "type": "type_error"}])
    # A value of the wrong JSON type is an error even where pydantic's lax mode would convert it; reported with
    # whatever else is wrong with the body, so a client learns everything at once.
    wrong_types = [field_error(f"body.{path}", kind, message) for path, kind, message in json_type_errors(model, payload)]
    return _validated(model, payload, wrong_types, "The request body is invalid.", NUL_FREE if _nul_free(body) else None)


def _validated(model: type[M], data: Any, found: list[dict[str, Any]], problem: str, context: Any = None) -> M:
    """``data`` validated against ``model``, with what was found wrong before (``found``) said together with the
    model's own errors, each field once: a client learns everything wrong with a body at once."""
    try:
        parsed = model.model_validate(data, context=context)
    except ValidationError as exc:
        named = {error["field"] for error in found}
        others = [error for error in pydantic_errors(exc, "body") if error["field"] not in named]
        raise ValidationProblem(problem, errors=found + others) from None
    if found:
        raise ValidationProblem(problem, errors=found)
    return parsed


def repeated_form_fields() -> list[dict[str, Any]]:
    """The request form's fields given twice with different values (``username=a&username=b`` logged in as the first,
    whatever a proxy in front had read): which one was meant is not for the server to guess."""
    form = request.form
    return [
        field_error(f"body.{key}", "repeated", f"given {len(values)} times with different values; send it once")
        for key in form
        if len(set(values := form.getlist(key))) > 1
    ]


def parse_form(model: type[M]) -> M:
    """An urlencoded or multipart form: a repeated field is a 422 naming it, with whatever else is wrong."""
    return _validated(model, request.form.to_dict(), repeated_form_fields(), "The form is invalid.")


def parse_query(model: type[M], list_fields: Iterable[str] = ()) -> M:
    """Query strings: repeated keys or comma-separated values become lists for ``list_fields``; any other key given
    twice with different values is a 422 naming it (which one was meant is not for the server to guess)."""
    data: dict[str, Any] = {}
    lists = set(list_fields)
    repeated: list[dict[str, Any]] = []
    for key in request.args:
        values = request.args.getlist(key)
        if key in lists:
            data[key] = [part for value in values for part in value.split(",") if part]
        else:
            if len(set(values)) > 1:
                repeated.append(field_error(f"query.{key}", "repeated", f"given {len(values)} times with different values; send it once"))
            data[key] = values[-1]  # the model still sees the key: an unknown one given twice is unknown, not repeated
    if repeated and model.model_config.get("extra") == "ignore":
        # A model that ignores parameters it does not know (the websocket's) ignores them however often given.
        repeated = [error for error in repeated if error["field"].removeprefix("query.") in model.model_fields]
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors = pydantic_errors(exc, "query")
        unknown = {error["field"] for error in errors if error["type"] == "extra_forbidden"}
        named = {error["field"] for error in repeated}
        kept = [error for error in repeated if error["field"] not in unknown]
        kept += [error for error in errors if error["field"] in unknown or error["field"] not in named]
        raise ValidationProblem("The query parameters are invalid.", errors=kept) from None
    if repeated:
        raise ValidationProblem("The query parameters are invalid.", errors=repeated)
    return parsed


def no_query() -> None:
    """For an endpoint that takes no query parameters: any is refused as a list endpoint refuses an unknown one
    (422, ``errors[].field`` = ``query.<name>``), never silently ignored. One dict lookup when there is none."""
    if current_request().environ.get("QUERY_STRING"):
        parse_query(NoQuery)


def no_input() -> None:
    """For an action that takes neither query parameters nor a body (close an alert, reactivate a usuario, a
    DELETE): a body it was sent cannot mean anything to it, so it is refused as a body would be anywhere else
    (415 a form or text, 400 broken JSON, 422 naming a field), never acted on as if it were not there."""
    no_query()
    request = current_request()
    # A chunked request says nothing of its length until it is read: one that carried no bytes sent no body.
    if request.content_length or ("HTTP_TRANSFER_ENCODING" in request.environ and request.get_data(cache=True)):
        parse_json(NoBody)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if isinstance(data, BaseModel):
        body = data.model_dump_json()
    else:
        body = json.dumps(data, default=str)
    response = current_app.response_class(body, status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def raw_json(body: str, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    """A response whose JSON document PostgreSQL already built (gad/services/json_sql.py): passed through as is."""
    return current_app.response_class(body, status=status, headers=headers, mimetype="application/json")


# A URI path that needs no percent-encoding (each one GAD builds for a Location: a collection's path and an id). Not
# one that starts with "//": that is a host to a URL parser (werkzeug's too), so such a Location is left to werkzeug.
_URI_PATH = re.compile(r"/(?!/)[A-Za-z0-9/._~-]*")


class _CreatedResponse(Response):
    def get_wsgi_headers(self, environ: Any) -> Headers:
        """werkzeug's, except that a ``Location`` already written as a URI path is sent as it is: werkzeug converts
        every Location from an IRI (a URL parse and three quotings) and sets it again, 2.5 % of a create's CPU
        (docs/BENCHMARKS.md, issue 18). Any other Location is converted as werkzeug does."""
        location = self.headers.get("Location")
        if location is None or _URI_PATH.fullmatch(location) is None:
            return super().get_wsgi_headers(environ)
        self.headers.remove("Location")
        try:
            headers = super().get_wsgi_headers(environ)
        finally:
            self.headers.add("Location", location)
        headers.add("Location", location)
        return headers


def created(body: str, location: str, version: int) -> Response:
    """201 Created: the new resource's JSON document (written already), its ETag and its ``Location``. A class of
    its own, used only here: as the app's ``response_class`` every other response paid for the Location check,
    and each view that returns Flask's own Response was converted to it."""
    return _CreatedResponse(body, status=201, headers={"ETag": etag(version), "Location": location}, mimetype="application/json")


def no_content() -> Response:
    """204 No Content: no body, so no Content-Type either (werkzeug would label the empty body text/html)."""
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    return response


def etag(version: int) -> str:
    return f'"{version}"'


def resource_response(out: Any, status: int = 200, location: str | None = None) -> Response:
    """One versioned resource (an Out schema with ``version``) with its ETag, and its Location when just created."""
    headers = {"ETag": etag(out.version)}
    if location is not None:
        headers["Location"] = location
    return json_response(out, status, headers)


def if_match_version() -> int | None:
    """The version a client based its write on (``If-Match: "3"``), or None when it sent none."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip()
    if value.startswith("W/"):
        return WEAK_ETAG  # matches no version: the service answers 412 once the row is found and the caller allowed
    # Exactly the tags this API sends: int() alone took 2 (unquoted), "0_3", "+4", and "-1" (read as a weak tag).
    tag = _ETAG.fullmatch(value)
    if tag is None:
        raise ValidationProblem(
            "If-Match must be an ETag returned by this API.",
            errors=[{"field": "header.If-Match", "message": 'expected a quoted version such as "3"', "type": "etag"}],
        )
    return int(tag.group(1))


def idempotent(view: Callable[..., Response]) -> Callable[..., Response]:
    """Honour ``Idempotency-Key``: the first request with a key runs; repeats get its stored response."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return view(*args, **kwargs)
        key = key.strip()
        if not key or len(key) > _MAX_KEY_LENGTH:
            raise ValidationProblem(
                "Invalid Idempotency-Key.",
                errors=[{"field": "header.Idempotency-Key", "message": f"1 to {_MAX_KEY_LENGTH} characters", "type": "idempotency_key"}],
            )
        actor = current_user()
        # Keyed: a body may hold a password (POST /users), and a plain SHA-256 of it, stored for the key's lifetime,
        # could be guessed at hash speed by whoever reads the table; the app's key makes the digest useless there.
        digest = hmac.new(str(current_app.config["SECRET_KEY"]).encode(), request.get_data() or b"", hashlib.sha256).hexdigest()
        stored = idempotency.claim(actor.id, key, request.method, request.path, digest)
        if stored is not None:
            replay = current_app.response_class(stored.body, status=stored.status_code, mimetype="application/json")
            for name, value in json.loads(stored.headers).items():
                replay.headers[name] = value
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        response = view(*args, **kwargs)
        if response.status_code < 400:
            kept = {name: response.headers[name] for name in ("Location", "ETag") if name in response.headers}
            idempotency.complete(actor.id, key, response.status_code, response.get_data(as_text=True), json.dumps(kept))
        return response

    return wrapper
