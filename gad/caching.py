"""Flask-Caching wiring: Redis when REDIS_URL is set (with our own key prefix), in-process otherwise."""

from __future__ import annotations

from flask import Flask

from gad.extensions import cache


def init_app(app: Flask) -> None:
    redis_url = app.config.get("REDIS_URL")
    if redis_url:
        config = {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": redis_url,
            # A non-empty prefix: clearing our cache must never wipe a shared Redis database.
            "CACHE_KEY_PREFIX": app.config["CACHE_KEY_PREFIX"],
            "CACHE_OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
            "CACHE_DEFAULT_TIMEOUT": app.config["CACHE_DEFAULT_TIMEOUT"],
        }
    else:
        config = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": app.config["CACHE_DEFAULT_TIMEOUT"], "CACHE_THRESHOLD": 1000}
    cache.init_app(app, config=config)
