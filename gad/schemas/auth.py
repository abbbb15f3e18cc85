"""Login and token schemas (JSON and the OAuth2 password form the seed's clients send)."""

from datetime import datetime
from typing import Literal

from pydantic import Field

from gad.schemas.common import InModel, OutModel


class LoginIn(InModel):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class LoginForm(InModel):
    """OAuth2 password grant: ``username`` is the e-mail; ``grant_type``, when sent, must say so (as GRUPO_GAD's
    FastAPI form required); the other optional OAuth2 fields are accepted and ignored."""

    username: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    grant_type: Literal["password"] | None = None
    scope: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


class TokenOut(OutModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class SesionOut(OutModel):
    """One of the caller's browser sessions (never its secret)."""

    id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime = Field(description="absolute end (SESSION_LIFETIME_HOURS after login)")
    idle_expires_at: datetime = Field(description="end if unused until then (SESSION_IDLE_MINUTES)")
    client: str | None
    user_agent: str | None
    actual: bool = Field(description="the session this request came with")


class SesionList(OutModel):
    items: list[SesionOut]
