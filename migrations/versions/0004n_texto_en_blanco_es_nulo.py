"""Optional text stored empty becomes null, as the API now stores a blank one.

Reviewed by hand: no schema change. Before this revision an optional text sent as spaces was stored as '' (the
API stripped it); from now on it is null (gad/schemas/common.py OptionalText), as if omitted. Older rows are
made the same here: an efectivo's rango, unidad and especialidad (a blank unidad sorted and filtered apart from
"no unidad" in the planning week), a turno's unidad and notas, a tarea's descripcion, ubicacion_descripcion and
notas, a usuario's telefono, a licencia's and an answer's motivo. No row's version changes and no event is
written: '' and null both meant "none". historial_estados is left as written: it is the tareas' history.

Downgrade changes nothing: the older code reads null as "none" too.

Revision ID: 0004n
Revises: 0004m
Create Date: 2026-12-02 14:40:00.000000

"""

from alembic import op

revision = "0004n"
down_revision = "0004m"
branch_labels = None
depends_on = None

COLUMNS = {
    "efectivos": ("rango", "unidad", "especialidad"),
    "turnos": ("unidad", "notas"),
    "tareas": ("descripcion", "ubicacion_descripcion", "notas"),
    "usuarios": ("telefono",),
    "licencias": ("motivo",),
    "notificaciones": ("motivo",),
}


def upgrade():
    for table, columns in COLUMNS.items():
        # One statement per table: each row is written once, whichever of its columns were empty.
        assignments = ", ".join(f"{column} = NULLIF({column}, '')" for column in columns)
        empty = " OR ".join(f"{column} = ''" for column in columns)
        op.execute(f"UPDATE {table} SET {assignments} WHERE {empty}")


def downgrade():
    pass
