"""The login rate limit: Flask-Limiter, imported and bound to the app the first time a limit is checked."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, after_this_request, current_app
from flask.globals import _cv_request

if TYPE_CHECKING:
    from flask_limiter import Limiter
    from flask_limiter.wrappers import RequestLimit

# Where Flask-Limiter keeps a request's state (limits checked, deductions pending), created the first time a
# limit is checked; tests/test_request_overhead.py fails if a Flask-Limiter release moves it.
LIMITER_REQUEST_STATE = "_limiter_request_context"
# In app.extensions: GAD, not Flask-Limiter, runs its after-request hook, per request, where a limit is checked.
_PER_REQUEST_HOOKS = "gad_limiter_per_request"

View = Callable[..., Any]


def has_limiter_state() -> bool:
    """Whether a limit was checked in this request (only then do Flask-Limiter's after-request hooks act)."""
    return hasattr(_cv_request.get(), LIMITER_REQUEST_STATE)


class LazyLimiter:
    """GAD's ``limiter``: Flask-Limiter as ``Limiter(**options)`` would be, built on first use.

    Flask-Limiter and ``limits`` (with its asyncio storages) cost every worker ~25 ms of CPU at start-up, yet
    only the two login views carry a limit (GAD sets no default or application limits). So serving workers
    record the declarations (``exempt``, ``shared_limit``) without importing it; the real ``Limiter`` is made
    when a limit is first checked, replaying them, so it ends in the state eager decoration would have left,
    and is bound (``init_app``) to the app that checks. The ``flask`` command line, and an app configured with
    default or application limits (which every request checks), bind it at once as before.
    Any other attribute is the real limiter's (``context``, ``limit_manager``…).
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._real: Limiter | None = None
        self._exempt: list[View] = []
        self._shared: list[_SharedLimit] = []
        self._bound: weakref.ref[Flask] | None = None
        self._after: Callable[[Response], Response] | None = None

    @property
    def real(self) -> Limiter:
        if self._real is None:
            from flask_limiter import Limiter

            import gad.ratelimit_storage  # noqa: F401 - registers the gadpg:// storage scheme

            real = Limiter(**self._options)
            for view in self._exempt:
                real.exempt(view)
            self._real = real
            for shared in self._shared:
                shared.materialize(real)
        return self._real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @property
    def current_limit(self) -> RequestLimit | None:
        """The limit this request breached or came closest to; None where no limit was checked."""
        return self._real.current_limit if self._real is not None and has_limiter_state() else None

    def reset(self) -> None:
        """Clear every counter of the storage the limiter is bound to (nothing is counted before it is)."""
        if self._real is not None and self._bound is not None:
            self._real.reset()

    # --- declarations (at import) -------------------------------------------------------------------------

    def exempt(self, view: View) -> View:
        """``Limiter.exempt`` for a view function: out of default and application limits."""
        self._exempt.append(view)
        if self._real is not None:
            self._real.exempt(view)
        return view

    def shared_limit(self, limit_value: str | Callable[[], str], scope: str) -> Callable[[View], View]:
        """``Limiter.shared_limit``: one counter for every view it decorates."""
        shared = _SharedLimit(self, limit_value, scope)
        self._shared.append(shared)
        if self._real is not None:
            shared.materialize(self._real)
        return shared

    # --- binding (in the factory, then at the first check) -------------------------------------------------

    def init_app(self, app: Flask, *, eager: bool) -> None:
        """Set the app up for limits: at once when ``eager``, else on the first request that checks one.

        Flask-Limiter's own ``init_app`` writes two settings into the config; they are written here, with
        the same defaults, so binding later does not write to the (by then read-only) config.
        """
        app.config.setdefault("RATELIMIT_ENABLED", True)
        app.config.setdefault("RATELIMIT_STRATEGY", "fixed-window")
        if eager:
            self.real.init_app(app)
            self._bound = weakref.ref(app)
            return
        # Flask-Limiter's after-request hook (conditional deductions, rate-limit headers) acts on the state a limit
        # check leaves on the request, and its teardown only clears that state, which lives on the request's
        # context and ends with it. Only a limited view checks a limit here, so that view runs the after-request
        # hook for its own request (``_SharedLimit``): app-wide hooks ran on every request to find nothing.
        app.extensions[_PER_REQUEST_HOOKS] = True

    def bound_to(self, app: Flask) -> Limiter:
        """The real limiter, bound to ``app`` (bound now if it was not, or was last bound to another app)."""
        real = self.real
        if self._bound is None or self._bound() is not app:
            hooks = _HookRecorder(app)
            real.init_app(hooks)  # type: ignore[arg-type]  # reads config and extensions, registers three hooks
            if self._after is None and hooks.after is not None:
                self._after = hooks.after  # its teardown only clears the request's state: see init_app
            app.extensions.setdefault("limiter", set()).add(real)
            self._bound = weakref.ref(app)
        return real


class _SharedLimit:
    """A ``shared_limit`` decorator whose Flask-Limiter counterpart is applied when the limiter is made."""

    def __init__(self, owner: LazyLimiter, limit_value: str | Callable[[], str], scope: str) -> None:
        self._owner = owner
        self._args = (limit_value,)
        self._kwargs = {"scope": scope}
        self._views: list[tuple[View, list[View]]] = []
        self._route_limit: Any = None

    def materialize(self, real: Limiter) -> None:
        if self._route_limit is None:
            self._route_limit = real.shared_limit(*self._args, **self._kwargs)  # type: ignore[arg-type]
        for view, slot in self._views:
            if not slot:
                slot.append(self._route_limit(view))

    def __call__(self, view: View) -> View:
        slot: list[View] = []  # the view as Flask-Limiter decorates it, once the limiter exists
        self._views.append((view, slot))
        if self._owner._real is not None:
            self.materialize(self._owner._real)

        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            owner = self._owner
            owner.bound_to(app)
            if owner._after is not None and app.extensions.get(_PER_REQUEST_HOOKS):
                after_this_request(owner._after)  # also when the check below refuses (429): as the app hook did
            return slot[0](*args, **kwargs)

        return limited


class _HookRecorder:
    """What ``Limiter.init_app`` is given when binding after start-up: the app's config and extensions, and a
    record of the after-request hook it registers, which the limited views run for their own requests
    (``LazyLimiter.init_app``): Flask refuses new hooks once an app has served a request."""

    def __init__(self, app: Flask) -> None:
        self.config = app.config
        self.extensions: dict[str, Any] = {}
        self.after: Callable[[Response], Response] | None = None

    def before_request(self, hook: Callable[[], Any]) -> None:
        pass  # its check of default and application limits: GAD binds eagerly when there are any

    def after_request(self, hook: Callable[[Response], Response]) -> None:
        self.after = hook

    def teardown_request(self, hook: Callable[[BaseException | None], None]) -> None:
        pass  # it clears the request's limiter state, which ends with the request's context anyway
