"""problem+json for the requests gunicorn rejects itself, before GAD's app sees them (installed by gunicorn.conf.py).

gunicorn answers a request it cannot parse — a request line past ``limit_request_line`` (414), a header field past
``limit_request_field_size`` or more than ``limit_request_fields`` of them (431), a malformed request line, header
or chunked body (400), a transfer coding it does not speak (501) — from ``Worker.handle_error``, with an HTML page
of its own. ``install`` wraps that method on each worker: gunicorn still decides the status and logs the rejection
as it always did (its HTML page is written into a buffer and only its status line is kept), and the client gets
the same status as application/problem+json, with the headers every GAD answer carries and ``Connection: close``.
The wrapper runs only on that error path: a request gunicorn parses never reaches it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES

from gad.errors import PROBLEM_MIMETYPE
from gad.observability import REQUEST_ID_HEADER, new_request_id

logger = logging.getLogger(__name__)

HandleError = Callable[[Any, Any, Any, BaseException], None]


class _Capture:
    """Stands in for the client's socket while gunicorn's own ``handle_error`` runs: it keeps the bytes gunicorn
    writes (its HTML page, which may quote the offending input) and sends nothing."""

    def __init__(self) -> None:
        self.written = bytearray()

    def sendall(self, data: bytes) -> None:
        self.written += data

    def send(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def gettimeout(self) -> float | None:
        return None

    def setblocking(self, flag: bool) -> None:
        pass

    def status(self) -> int | None:
        """The status of the answer gunicorn wrote (``HTTP/1.1 414 URI Too Long``), or None if it wrote none."""
        line = bytes(self.written).partition(b"\r\n")[0].split()
        if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
            return int(line[1])
        return None


def _detail(exc: BaseException, status: int, cfg: Any) -> str:
    """What the client got wrong, in GAD's words and with the limit it passed; never ``str(exc)``, which quotes the
    input (a 10,000-character URL, a header value, whatever bytes stood where a method should)."""
    name = type(exc).__name__
    line, fields, field_size = cfg.limit_request_line, cfg.limit_request_fields, cfg.limit_request_field_size
    if name == "LimitRequestLine":
        return f"The request line (method, URI and HTTP version) is longer than {line} bytes."
    if name == "LimitRequestHeaders":
        kind = str(getattr(exc, "msg", ""))
        if kind == "limit request headers fields":
            return f"The request has more than {fields} header fields."
        if kind == "limit request headers fields size":
            return f"A header field (name, value and line end) is longer than {field_size} bytes."
        if "trailer" in kind:
            return "The trailer section of the chunked request body is too large."
        return f"The request's header section is too large (at most {fields} fields of {field_size} bytes each)."
    return _DETAILS.get(name) or _BY_STATUS.get(status) or "The request could not be understood."


_DETAILS = {
    "InvalidRequestLine": "The request line is not `METHOD request-target HTTP/1.1`.",
    "InvalidRequestMethod": "The request method is not a valid method name.",
    "InvalidHTTPVersion": "The HTTP version is not one this server speaks (HTTP/1.0 or HTTP/1.1).",
    "InvalidHeader": "A header field is malformed, contradicts another, or the request's framing (Content-Length, Transfer-Encoding) is ambiguous.",
    "InvalidHeaderName": "A header field name is not a valid token.",
    "ObsoleteFolding": "A header field is continued on a second line (obsolete line folding), which is not accepted.",
    "InvalidChunkSize": "The chunked request body is malformed (a chunk size is not a hexadecimal number).",
    "ChunkMissingTerminator": "The chunked request body is malformed (a chunk does not end with CRLF).",
    "InvalidChunkExtension": "The chunked request body is malformed (an invalid chunk extension).",
    "UnsupportedTransferCoding": "The request's Transfer-Encoding is not supported: send `chunked` or a Content-Length.",
    "ExpectationFailed": "The Expect header asks for something other than `100-continue`.",
    "InvalidSchemeHeaders": "The request's forwarded scheme headers contradict each other.",
    "InvalidProxyLine": "The PROXY protocol line is malformed.",
    "ForbiddenProxyRequest": "This client may not send a PROXY protocol line.",
}


def body_detail(exc: BaseException) -> str:
    """What was wrong with a request body gunicorn failed to read for the app (gad.errors answers it 400)."""
    if type(exc).__name__ == "NoMoreData":
        return "The request body ended before it was complete."
    return _DETAILS.get(type(exc).__name__) or "The request body could not be read."


_BY_STATUS = {
    400: "The request could not be understood.",
    403: "The request is not allowed.",
    500: "An unexpected error occurred.",
}


def problem_bytes(status: int, detail: str, header_writers: list[Any]) -> bytes:
    """A complete HTTP/1.1 answer: ``status`` as problem+json, closing the connection, with GAD's usual headers."""
    if status >= 500 and status != 501:
        # The same problem the app answers for an unexpected error (gad.errors._handle_unexpected).
        code, title = "internal_error", "Internal server error"
    else:
        title = HTTP_STATUS_CODES.get(status, "Bad Request")
        code = title.lower().replace(" ", "_")
    body = json.dumps({"type": f"https://gad.example/problems/{code}", "title": title, "status": status, "detail": detail, "code": code}).encode()
    headers: list[tuple[str, str]] = [("Content-Type", PROBLEM_MIMETYPE), ("Content-Length", str(len(body))), ("Connection", "close")]
    # The security headers (and whatever else the app adds to every answer) from the app's own writers: no request
    # was parsed, so no Origin to answer CORS for.
    present = {name.lower(): value for name, value in headers}
    for write in header_writers:
        write({}, headers, present)
    headers.append((REQUEST_ID_HEADER, new_request_id()))
    head = f"HTTP/1.1 {status} {HTTP_STATUS_CODES.get(status, 'Error')}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (head + "\r\n").encode("latin-1") + body


def install(worker: Any) -> None:
    """Answer what gunicorn rejects on ``worker`` as problem+json (gunicorn.conf.py's ``post_worker_init``: the app,
    whose header writers it uses, is loaded by then)."""
    from gunicorn.http.errors import ParseException
    from gunicorn.util import write_nonblock

    gunicorn_handle_error: HandleError = worker.handle_error

    def handle_error(req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        capture = _Capture()
        # gunicorn's own handling, unchanged but for where its answer goes: its status, its log lines.
        gunicorn_handle_error(req, capture, addr, exc)
        status = capture.status() or (400 if isinstance(exc, ParseException) else 500)
        app = getattr(worker, "wsgi", None)  # None if the app failed to load
        boundary = getattr(app, "extensions", {}).get("gad_boundary")
        answer = problem_bytes(status, _detail(exc, status, worker.cfg), boundary.header_writers if boundary else [])
        try:
            # As gunicorn writes its own page: never waiting on a client that does not read.
            write_nonblock(client, answer)
        except OSError:  # gone, or not reading
            logger.debug("could not send the %s problem to the client", status)

    worker.handle_error = handle_error
