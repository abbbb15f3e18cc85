"""Unidades in the one spelling the API now keeps (composed, words one space apart).

Reviewed by hand: no schema change. From this revision the API stores and compares a unidad NFC-normalised, its
words split on whitespace, trimmed of blank characters and joined by one space (gad/text.py canonical_unidad):
an alert to «Móvil 101» had reached nobody whose efectivo was written «Mo\u0301vil  101». Older efectivos' and
turnos' unidades are rewritten here so filters, alerts and the planning week find them; one left blank becomes
null, as the API stores it. No row's version changes and no event is written: both spellings named the same
unidad. Alerts already sent keep the unidad as it was written, as their record of what was asked. The rule is
copied here, not imported: a migration must keep doing what it did when it was written.

Downgrade changes nothing: the older code reads and accepts the canonical spelling.

Revision ID: 0004p
Revises: 0004n
Create Date: 2026-12-03 05:30:00.000000

"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0004p"
down_revision = "0004n"
branch_labels = None
depends_on = None

# The rules as gad/text.py had them on 2026-12-03 (is_blank, strip_blank, canonical_unidad).
_DRAWN_BLANK = frozenset("\u034f\u180b\u180c\u180d\u180f\u115f\u1160\u3164\uffa0\u2800")


def _blank(character: str) -> bool:
    category = unicodedata.category(character)
    return (
        character in _DRAWN_BLANK
        or (category[0] in "CZ" and category != "Cs")
        or "\ufe00" <= character <= "\ufe0f"
        or "\U000e0100" <= character <= "\U000e01ef"
    )


def _strip(value: str) -> str:
    start, end = 0, len(value)
    while start < end and _blank(value[start]):
        start += 1
    while end > start and _blank(value[end - 1]):
        end -= 1
    return value[start:end]


def _unidad(value: str) -> str | None:
    words = (_strip(word) for word in unicodedata.normalize("NFC", value).split())
    return " ".join(word for word in words if word) or None


def upgrade():
    bind = op.get_bind()
    for table in ("efectivos", "turnos"):
        # One UPDATE per spelling, not per row: a unidad is shared by many rows, written the same way.
        for (written,) in bind.execute(sa.text(f"SELECT DISTINCT unidad FROM {table} WHERE unidad IS NOT NULL")).all():
            canonical = _unidad(written)
            if canonical != written:
                bind.execute(sa.text(f"UPDATE {table} SET unidad = :canonical WHERE unidad = :written"), {"canonical": canonical, "written": written})


def downgrade():
    pass
