"""Notification, acknowledgement and broadcast-alert schemas (REST bodies and the ``notification`` frame's data)."""

from datetime import datetime
from typing import Self

from pydantic import Field, model_validator

from gad.schemas.common import InModel, OptionalText, OutModel, PageQuery, RowId, Text, Unidad, rule_broken
from gad.vocab import CausaNotificacion, DestinoAlerta, RespuestaNotificacion, TipoAlerta


class NotificacionOut(OutModel):
    """One notification as REST returns it and as the ``data`` of a ``notification`` websocket frame."""

    id: int
    usuario_id: int
    destinatario: str = Field(description="The recipient's name")
    causa: str = Field(description="asignacion, emergencia, alerta, escalacion or rechazo")
    titulo: str
    texto: str
    prioridad: int
    requiere_respuesta: bool = Field(description="True when the recipient is asked for acepto / no_puedo")
    estado: str = Field(description="creada, entregada, leida, aceptada or rechazada")
    tarea_id: int | None
    efectivo_id: int | None
    alerta_id: int | None
    origen_id: int | None = Field(description="For an escalation or a 'no puedo' notice: the notification it is about")
    creada_en: datetime
    entregada_en: datetime | None
    leida_en: datetime | None
    respuesta: str | None = Field(description="acepto or no_puedo once answered")
    motivo: str | None
    respondida_en: datetime | None
    escalar_en: datetime | None = Field(description="Deadline after which an unanswered notification escalates")
    escalada_en: datetime | None


class NotificacionPage(OutModel):
    items: list[NotificacionOut]
    total: int
    limit: int
    offset: int
    no_leidas: int = Field(description="Unread notifications of this usuario (the tray's badge)")


class NotificacionQuery(PageQuery):
    no_leidas: bool = Field(False, description="Only notifications not yet read")
    pendientes: bool = Field(
        False,
        description="Only notifications that still wait for acepto / no_puedo: unanswered, their assignment not released "
        "(taken off, declined, tarea ended) and their alert not closed; escalated ones included",
    )
    usuario_id: int | None = Field(None, ge=1, description="Supervisors: another usuario's notifications")
    todos: bool = Field(False, description="Supervisors: every usuario's notifications (the board's answer marks)")
    causa: list[CausaNotificacion] | None = Field(None, description="Only these causas (comma-separated)")
    tarea_id: int | None = Field(None, ge=1)
    alerta_id: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_usuario_or_all(self) -> Self:
        # todos answered everyone's and dropped the usuario asked for without a word: the caller read the wrong list.
        if self.todos and self.usuario_id is not None:
            raise rule_broken("usuario_id names one usuario and todos asks for every one: send one", "Elija un usuario o todos, no ambos.", "usuario_id")
        return self


class AckIn(InModel):
    respuesta: RespuestaNotificacion
    motivo: OptionalText = Field(None, max_length=500, description="Why not (recommended with no_puedo); not with leida")

    @model_validator(mode="after")
    def _motivo_goes_with_an_answer(self) -> Self:
        if self.respuesta == RespuestaNotificacion.LEIDA and self.motivo is not None:
            # "Read" answers nothing: a reason sent with it would be dropped, and its sender believe it was given.
            raise rule_broken("motivo goes with an answer (acepto, no_puedo), not with leida", "El motivo acompaña a una respuesta, no a «leída».", "motivo")
        return self


class AlertaIn(InModel):
    tipo: TipoAlerta
    texto: Text = Field(min_length=1, max_length=2000)
    destino: DestinoAlerta
    unidad: Unidad = Field(None, description="With destino=unidad")
    usuario_ids: list[RowId] | None = Field(None, min_length=1, max_length=5000, description="With destino=usuarios")
    prioridad: int | None = Field(None, ge=1, le=5, description="Default: 5 for codigo_rojo and evacuacion, 4 refuerzos, 3 aviso")

    @model_validator(mode="after")
    def _target(self) -> Self:
        if (self.destino == DestinoAlerta.UNIDAD) != (self.unidad is not None):
            raise rule_broken("unidad goes with destino=unidad, and only with it", "La unidad se indica con destino «unidad», y solo con él.", "unidad")
        if (self.destino == DestinoAlerta.USUARIOS) != (self.usuario_ids is not None):
            raise rule_broken(
                "usuario_ids goes with destino=usuarios, and only with it", "Los usuarios se indican con destino «usuarios», y solo con él.", "usuario_ids"
            )
        return self


class Faltante(OutModel):
    usuario_id: int
    nombre: str
    notificacion_id: int
    entregada_en: datetime | None
    reenvios: int


class AlertaOut(OutModel):
    id: int
    tipo: str
    texto: str
    prioridad: int
    destino: str
    unidad: str | None
    creado_por_usuario_id: int
    created_at: datetime
    cerrada_en: datetime | None
    total: int
    confirmados: int = Field(description="Recipients who answered acepto")
    no_pueden: int = Field(description="Recipients who answered no_puedo")
    pendientes: int = Field(description="Recipients who have not answered")
    entregadas: int = Field(description="Recipients whose device reported the alert")
    faltan: list[Faltante] | None = Field(None, description="Who has not answered (detail only)")
