"""Audit trail (event log) schemas."""

from datetime import datetime
from typing import Any

from pydantic import Field

from gad.schemas.common import DateWindow, OutModel, QueryModel, RowId
from gad.vocab import EVENT_ID_MAX


class EventoQuery(DateWindow):
    actor_id: RowId | None = None
    entity_type: str | None = Field(None, max_length=30)
    entity_id: RowId | None = None
    event_type: str | None = Field(None, max_length=50)
    after_id: int = Field(0, ge=0, le=EVENT_ID_MAX, description="Cursor: return events with id greater than this")
    limit: int = Field(100, ge=1, le=500)


class EventoOut(OutModel):
    id: int
    event_type: str
    topic: str
    entity_type: str
    entity_id: int | None
    actor_id: int | None
    request_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    prev_hash: str
    hash: str


class EventoPage(OutModel):
    items: list[EventoOut]
    next_cursor: int | None = Field(description="Pass as after_id to get the next page; null at the end")


class RecientesQuery(QueryModel):
    limit: int = Field(30, ge=1, le=100)


class EventoFrameOut(OutModel):
    """An event in the websocket envelope, so a page renders replayed and live events alike."""

    id: int
    event_type: str
    topic: str
    data: dict[str, Any] = Field(validation_alias="payload")
    timestamp: datetime = Field(validation_alias="created_at")
