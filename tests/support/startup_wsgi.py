"""The real app plus a route reporting what the worker had done at start-up: collector state, modules imported."""

import gc
import sys

from flask import jsonify

# gunicorn.conf.py's post_fork turns the collector off before the worker imports the app.
COLLECTOR_ON_DURING_IMPORT = gc.isenabled()

from gad import create_app  # noqa: E402 - the line above must run before the app's import

app = create_app()


@app.get("/_test/startup")
def startup():
    return jsonify(
        collector_on_during_import=COLLECTOR_ON_DURING_IMPORT,
        collector_on=gc.isenabled(),
        frozen_objects=gc.get_freeze_count(),
        imported=sorted(name for name in ("flask_limiter", "limits", "argon2") if name in sys.modules),
    )
