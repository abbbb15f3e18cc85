"""Usuarios' e-mails and DNIs in the one spelling the API now keeps (NFKC e-mails, DNIs without separators).

Reviewed by hand: no schema change. From this revision the API stores an e-mail NFKC-normalised, trimmed and
lower-cased, and a DNI NFKC-normalised, in capitals, as its letters and digits only
(gad/text.py canonical_email / canonical_dni), and compares new ones in that form. A row written
before keeps its old spelling unless rewritten here, and a second account for the same person could then be
made under the new one. Each row whose canonical form no other row shares is rewritten; rows that would become
one another's duplicates (or a DNI shorter than the CHECK's five characters) are left as they are and named in
a warning: which of them is the person is the operator's call, as the GRUPO_GAD importer leaves it. The rules are
copied here, not imported: a migration must keep doing what it did when it was written.

Downgrade changes nothing: the older code reads and accepts the canonical spelling.

Revision ID: 0004m
Revises: 0004k
Create Date: 2026-12-02 14:10:00.000000

"""

import logging
import unicodedata
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0004m"
down_revision = "0004k"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

# The rules as gad/schemas/common.py (since moved to gad/text.py) had them on 2026-12-02 (canonical_email, canonical_dni, is_blank).
_DRAWN_BLANK = frozenset("\u034f\u180b\u180c\u180d\u180f\u115f\u1160\u3164\uffa0\u2800")


def _blank(character: str) -> bool:
    return (
        character in _DRAWN_BLANK
        or unicodedata.category(character)[0] in "CZ"
        or "\ufe00" <= character <= "\ufe0f"
        or "\U000e0100" <= character <= "\U000e01ef"
    )


def _email(value: str) -> str:
    value = unicodedata.normalize("NFKC", value)
    start, end = 0, len(value)
    while start < end and _blank(value[start]):
        start += 1
    while end > start and _blank(value[end - 1]):
        end -= 1
    return value[start:end].lower()


def _dni(value: str) -> str:
    return "".join(character for character in unicodedata.normalize("NFKC", value).upper() if character.isalnum())


def _rewrite(column: str, canonical: Callable[[str], str], valid: Callable[[str], bool] = lambda value: True) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT id, {column} FROM usuarios ORDER BY id")).all()
    groups: dict[str, list[tuple[int, str]]] = {}
    for usuario_id, value in rows:
        groups.setdefault(canonical(value), []).append((usuario_id, value))
    left = []
    for spelling, members in groups.items():
        if len(members) > 1:
            if any(value != spelling for _, value in members):
                left.append(f"usuarios {', '.join(str(i) for i, _ in members)} ({', '.join(repr(v) for _, v in members)}) are one {column} as {spelling!r}")
            continue
        [(usuario_id, value)] = members
        if value == spelling:
            continue
        if not valid(spelling):
            left.append(f"usuario {usuario_id}'s {column} {value!r} would become {spelling!r}, which the table refuses")
            continue
        bind.execute(sa.text(f"UPDATE usuarios SET {column} = :value WHERE id = :id"), {"value": spelling, "id": usuario_id})
    for line in left:
        logger.warning("0004m left as it was: %s; decide which is the person and correct or deactivate the other", line)


def upgrade():
    _rewrite("email", _email)
    _rewrite("dni", _dni, valid=lambda value: len(value) >= 5)


def downgrade():
    pass
