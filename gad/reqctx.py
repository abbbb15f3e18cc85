"""The current request, ``g`` and app read straight from Flask's context variables, for code every request runs.

``flask.request``, ``flask.g`` and ``flask.current_app`` are werkzeug proxies: each attribute read through one
resolves the context variable again in Python, about 1 µs on this machine (docs/BENCHMARKS.md, issue 18's
fifth pass), and the hooks every request runs (request id, metrics, headers, authentication) made 15–30 such
reads per request. These return the objects the proxies stand for, for the price of one context-variable read.
Outside a request (or app) context they raise ``LookupError``, where the proxies raise ``RuntimeError``.
``tests/test_request_overhead.py`` checks they are the very objects the proxies resolve to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask.globals import _cv_app, _cv_request

if TYPE_CHECKING:
    from flask import Flask, Request
    from flask.ctx import _AppCtxGlobals


def current_request() -> Request:
    return _cv_request.get().request


def request_or_none() -> Request | None:
    """The current request, or None outside one (the command line, a background greenlet)."""
    context = _cv_request.get(None)
    return context.request if context is not None else None


def current_g() -> _AppCtxGlobals:
    return _cv_app.get().g


def current_flask_app() -> Flask:
    return _cv_app.get().app
