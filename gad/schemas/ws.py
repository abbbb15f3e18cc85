"""Websocket frame schemas (client → server) and the handshake's query parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class WsConnectQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    token: str | None = Field(None, description="Access token, for clients that cannot send headers (never logged)")
    since: int | None = Field(None, ge=0, description="Resume after this event id")


class Topics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: list[str] = Field(max_length=20)


class Received(BaseModel):
    """``notification_received``: the notification ids this socket got (the page reports them at once)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[int] = Field(min_length=1, max_length=500)


class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event_type: Literal["subscribe", "unsubscribe", "pong", "notification_received"]
    data: Topics | Received | None = None
