"""Delivery channels behind the notification ledger: the in-app channel, and the interface outbound ones plug into.

The ledger (gad.services.notificaciones) never knows how a notification travels: it hands each new row
to every active channel. A channel is either *transactional* — it delivers inside the transaction that
wrote the notification, as the in-app channel does by appending a ``notification`` event to the event
log (so it reaches every socket of the recipient on commit, and is replayed on resume) — or *outbound*:
its delivery record (``notificacion_entregas``) is written ``pendiente`` with the notification, and
every process's sweep later calls ``send`` outside any request, with retries and backoff, recording
each attempt. A Telegram or Web Push channel is an outbound one: implement ``send`` (raise on failure),
``register_canal`` it at import, and list its name in ``NOTIF_CANALES``. Nothing in the ledger changes.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy.orm import Session

from gad.models import Notificacion
from gad.realtime import events
from gad.schemas.events import Notification

logger = logging.getLogger(__name__)

INAPP = "inapp"
NOTIFICATION_TOPIC = "notificaciones"


class Canal(Protocol):
    """A way a notification reaches its recipient."""

    name: str
    # True: ``send`` runs inside the notification's own transaction and must only write to the database.
    transactional: bool

    def send(self, session: Session, notificacion: Notificacion, payload: dict[str, Any]) -> None:
        """Deliver one notification; raise to have the attempt recorded as failed and retried later."""


class InAppCanal:
    """The dashboard and the phone page: a ``notification`` event only the recipient's sockets receive."""

    name = INAPP
    transactional = True

    def send(self, session: Session, notificacion: Notificacion, payload: dict[str, Any]) -> None:
        frame = Notification.model_validate(payload | {"privada": True})
        events.record(
            session, frame, topic=NOTIFICATION_TOPIC, entity_type="notificacion", entity_id=notificacion.id, actor_id=notificacion.creado_por_usuario_id
        )


_REGISTRY: dict[str, Canal] = {}


def register_canal(canal: Canal) -> None:
    """Make a channel available by name; ``NOTIF_CANALES`` chooses which registered ones are used."""
    _REGISTRY[canal.name] = canal


def get_canal(name: str) -> Canal | None:
    return _REGISTRY.get(name)


def active(names: list[str]) -> list[Canal]:
    """The configured channels, in order; an unknown name is a configuration error caught at start-up."""
    missing = [name for name in names if name not in _REGISTRY]
    if missing:
        raise LookupError(f"NOTIF_CANALES names unknown channels {missing}; registered: {sorted(_REGISTRY)}")
    return [_REGISTRY[name] for name in names]


register_canal(InAppCanal())
