"""Websocket frame schemas (client → server) and the handshake's query parameters."""

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, Field, Strict, model_validator

from gad.schemas.common import RowId, schema_config
from gad.vocab import EVENT_ID_MAX


class WsConnectQuery(BaseModel):
    model_config = schema_config(extra="ignore")

    token: str | None = Field(None, description="Access token, for clients that cannot send headers (never logged)")
    since: int | None = Field(None, ge=0, le=EVENT_ID_MAX, description="Resume after this event id")
    usuario: int | None = Field(None, description="A browser page's usuario: refused (401) when the session cookie is now another's")


# GRUPO_GAD's clients subscribe to event types; GAD delivers by topic. Each old name maps onto the topics
# that carry it (task events of an emergency travel on "emergencias").
_TAREA_TOPICS = frozenset({"tareas", "emergencias"})
EVENT_TYPE_TOPICS: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ("task_created", "task_updated", "task_status_changed", "task_assigned", "task_unassigned", "task_deleted"),
        _TAREA_TOPICS,
    ),
    "emergency_created": frozenset({"emergencias"}),
    **dict.fromkeys(("efectivo_created", "efectivo_updated", "efectivo_status_changed", "efectivo_location_update"), frozenset({"efectivos"})),
    **dict.fromkeys(("user_created", "user_updated"), frozenset({"usuarios"})),
    **dict.fromkeys(("notification", "alert"), frozenset({"sistema"})),
}


class Topics(BaseModel):
    model_config = schema_config(extra="forbid")

    topics: list[str] | None = Field(None, max_length=20)
    events: list[str] | None = Field(None, max_length=20, description="GRUPO_GAD clients: event type names, mapped onto their topics")

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if self.topics is None and self.events is None:
            raise ValueError("send data.topics (or data.events, event type names)")
        return self


class Received(BaseModel):
    """``notification_received``: the notification ids this socket got (the page reports them at once)."""

    model_config = schema_config(extra="forbid")

    # Strict: a frame is JSON, where "5" and true are not the id 5 or 1 (as in request bodies, blueprints.http).
    ids: list[Annotated[RowId, Strict()]] = Field(min_length=1, max_length=500)


class ClientFrame(BaseModel):
    model_config = schema_config(extra="ignore")

    event_type: Literal["subscribe", "unsubscribe", "pong", "notification_received"]
    # Checked per event type: a pong may carry anything (GRUPO_GAD's clients echo data in it).
    data: dict[str, Any] | None = None
