"""The real app plus a route that holds its worker's CPU, never yielding to gevent, until a file appears."""

import os
import time

from flask import jsonify

from gad import create_app

app = create_app()


@app.get("/_test/busy")
def busy():
    directory = os.environ["GAD_TEST_BUSY_DIR"]
    open(os.path.join(directory, f"busy-{os.getpid()}"), "w").close()
    release = os.path.join(directory, "release")
    deadline = time.monotonic() + 20
    while not os.path.exists(release) and time.monotonic() < deadline:
        pass  # a CPU-bound request: this worker's hub, its accept loop included, does not run meanwhile
    return jsonify(pid=os.getpid())
