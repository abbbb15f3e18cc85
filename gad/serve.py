"""``python -m gad.serve``: the image's command. Check every setting, then become gunicorn (same process).

gunicorn reads ``WEB_CONCURRENCY`` with ``int()`` when it is imported, before any configuration file of
ours runs: ``WEB_CONCURRENCY=abc`` gave a traceback. Checked here first, a bad setting is one line
naming the variable and exit status 1; then ``exec`` keeps the pid, so Fly's SIGTERM reaches gunicorn.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_ARGS = ["-c", "gunicorn.conf.py", "wsgi:app"]


def exec_gunicorn(env: Mapping[str, str]) -> NoReturn:
    """Replace this process with ``gunicorn -c gunicorn.conf.py wsgi:app`` run from the project root."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    os.chdir(ROOT)
    os.execve(gunicorn, [gunicorn, *GUNICORN_ARGS], dict(env))


def main() -> None:
    try:
        load_config()
    except ConfigError as exc:
        sys.exit(f"GAD configuration error: {exc}")
    exec_gunicorn(os.environ)


if __name__ == "__main__":
    main()
