"""Who is the client: the peer address, or Fly's Fly-Client-IP when TRUST_PROXY says we sit behind Fly."""

from __future__ import annotations

from flask import current_app, request


def client_address() -> str:
    # Client-sent X-Forwarded-For / X-Real-IP are never consulted: anyone can forge them (the seed trusted them).
    if current_app.config.get("TRUST_PROXY"):
        fly_ip = request.headers.get("Fly-Client-IP", "").strip()
        if fly_ip:
            return fly_ip
    return request.remote_addr or "unknown"
