"""turnos, licencias and reservations: time ranges the database keeps from overlapping.

Reviewed by hand:
- btree_gist gives GiST an equality operator for integers, so one exclusion constraint says "same
  efectivo AND overlapping range" (turnos, licencias, and active asignaciones that carry a window).
- The old "one active assignment per efectivo" unique index now covers only assignments without a
  window (unscheduled tareas, emergencies); windowed ones are ruled by the exclusion constraint.
- A rule that spans two tables (no turno or booking inside a licencia) cannot be an exclusion
  constraint: triggers check it after locking the efectivo's row, so two transactions touching the
  same efectivo's agenda are serialised and the later one sees the earlier one's committed rows.
  They raise SQLSTATE 23P01 (exclusion_violation) with a constraint name, like the constraints do.

Revision ID: 0004f
Revises: 0004c
Create Date: 2026-11-29 23:55:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0004f'
down_revision = '0004c'
branch_labels = None
depends_on = None

_FINITE = "NOT isempty(periodo) AND NOT lower_inf(periodo) AND NOT upper_inf(periodo)"


def _ranged_table(name, tipo_check, extra_columns):
    op.create_table(
        name,
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('efectivo_id', sa.Integer(), nullable=False),
        sa.Column('tipo', sa.String(length=20), nullable=False),
        sa.Column('periodo', postgresql.TSTZRANGE(), nullable=False),
        *extra_columns,
        sa.Column('creado_por_usuario_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.CheckConstraint(_FINITE, name=op.f(f'ck_{name}_periodo_finito')),
        sa.CheckConstraint(tipo_check, name=op.f(f'ck_{name}_tipo_valido')),
        sa.ForeignKeyConstraint(['efectivo_id'], ['efectivos.id'], name=op.f(f'fk_{name}_efectivo_id_efectivos')),
        sa.ForeignKeyConstraint(['creado_por_usuario_id'], ['usuarios.id'], name=op.f(f'fk_{name}_creado_por_usuario_id_usuarios')),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
        postgresql.ExcludeConstraint(('efectivo_id', '='), ('periodo', '&&'), name=f'ex_{name}_sin_solape', using='gist'),
    )


def upgrade():
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    _ranged_table(
        'turnos',
        "tipo IN ('servicio', 'guardia', 'reten')",
        [
            sa.Column('unidad', sa.String(length=100), nullable=True),
            sa.Column('serie', sa.Uuid(), nullable=True),
            sa.Column('notas', sa.String(length=500), nullable=True),
        ],
    )
    op.create_index(op.f('ix_turnos_unidad'), 'turnos', ['unidad'], unique=False)
    op.create_index(op.f('ix_turnos_serie'), 'turnos', ['serie'], unique=False)
    _ranged_table(
        'licencias',
        "tipo IN ('vacaciones', 'enfermedad', 'formacion', 'otra')",
        [sa.Column('motivo', sa.String(length=500), nullable=True)],
    )

    op.add_column('asignaciones', sa.Column('periodo', postgresql.TSTZRANGE(), nullable=True))
    op.add_column('asignaciones', sa.Column('fuera_de_turno', sa.Boolean(), server_default='false', nullable=False))
    # Active assignments of windowed tareas become bookings. Before this revision an efectivo held at
    # most one active assignment, so the backfill cannot violate the new constraint.
    op.execute("""
        UPDATE asignaciones a SET periodo = tstzrange(t.inicio_programado, t.fin_programado, '[)')
        FROM tareas t
        WHERE a.tarea_id = t.id AND a.liberado_en IS NULL
          AND t.inicio_programado IS NOT NULL AND t.fin_programado IS NOT NULL
    """)
    op.drop_index('uq_asignaciones_efectivo_activa', table_name='asignaciones')
    op.create_index(
        'uq_asignaciones_efectivo_activa', 'asignaciones', ['efectivo_id'], unique=True,
        postgresql_where=sa.text('liberado_en IS NULL AND periodo IS NULL'),
    )
    op.create_exclude_constraint(
        'ex_asignaciones_reserva_sin_solape', 'asignaciones', ('efectivo_id', '='), ('periodo', '&&'),
        using='gist', where=sa.text('liberado_en IS NULL'),
    )

    op.execute("""
        CREATE FUNCTION gad_agenda_sin_licencia() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            clash bigint;
        BEGIN
            -- A released or windowless assignment books nothing. (to_jsonb: NEW of the other tables has no liberado_en.)
            IF TG_TABLE_NAME = 'asignaciones' AND (to_jsonb(NEW) ->> 'liberado_en' IS NOT NULL OR NEW.periodo IS NULL) THEN
                RETURN NEW;
            END IF;
            -- Serialise every change to this efectivo's agenda (see the revision docstring).
            PERFORM 1 FROM efectivos WHERE id = NEW.efectivo_id FOR UPDATE;
            IF TG_TABLE_NAME = 'licencias' THEN
                SELECT id INTO clash FROM turnos WHERE efectivo_id = NEW.efectivo_id AND periodo && NEW.periodo LIMIT 1;
                IF FOUND THEN
                    RAISE EXCEPTION 'licencia overlaps turno %', clash
                        USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'licencia_con_turnos', TABLE = 'licencias';
                END IF;
                SELECT tarea_id INTO clash FROM asignaciones
                 WHERE efectivo_id = NEW.efectivo_id AND liberado_en IS NULL AND periodo && NEW.periodo LIMIT 1;
                IF FOUND THEN
                    RAISE EXCEPTION 'licencia overlaps the booking on tarea %', clash
                        USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'licencia_con_reservas', TABLE = 'licencias';
                END IF;
            ELSE
                SELECT id INTO clash FROM licencias WHERE efectivo_id = NEW.efectivo_id AND periodo && NEW.periodo LIMIT 1;
                IF FOUND THEN
                    RAISE EXCEPTION '% inside licencia %', TG_TABLE_NAME, clash
                        USING ERRCODE = 'exclusion_violation', CONSTRAINT = TG_TABLE_NAME || '_en_licencia', TABLE = TG_TABLE_NAME;
                END IF;
            END IF;
            RETURN NEW;
        END;
        $$
    """)
    for name in ('turnos', 'licencias', 'asignaciones'):
        op.execute(
            f"CREATE TRIGGER {name}_sin_licencia BEFORE INSERT OR UPDATE ON {name} "
            "FOR EACH ROW EXECUTE FUNCTION gad_agenda_sin_licencia()"
        )
    # Reports filter tareas by creation time and read the first assignment from the tarea row.
    op.create_index(op.f('ix_tareas_created_at'), 'tareas', ['created_at'], unique=False)
    op.add_column('tareas', sa.Column('primera_asignacion_en', sa.DateTime(timezone=True), nullable=True))
    op.execute("""
        UPDATE tareas t SET primera_asignacion_en = a.primera
        FROM (SELECT tarea_id, min(asignado_en) AS primera FROM asignaciones GROUP BY tarea_id) a
        WHERE a.tarea_id = t.id
    """)


def downgrade():
    op.drop_column('tareas', 'primera_asignacion_en')
    op.drop_index(op.f('ix_tareas_created_at'), table_name='tareas')
    for name in ('turnos', 'licencias', 'asignaciones'):
        op.execute(f"DROP TRIGGER {name}_sin_licencia ON {name}")
    op.execute("DROP FUNCTION gad_agenda_sin_licencia()")
    op.drop_constraint('ex_asignaciones_reserva_sin_solape', 'asignaciones')
    op.drop_index('uq_asignaciones_efectivo_activa', table_name='asignaciones')
    # Bookings that coexist would break the old one-active-assignment rule: release all but the earliest.
    op.execute("""
        UPDATE asignaciones a SET liberado_en = now()
        WHERE a.liberado_en IS NULL AND EXISTS (
            SELECT 1 FROM asignaciones b
            WHERE b.efectivo_id = a.efectivo_id AND b.liberado_en IS NULL AND b.id < a.id)
    """)
    op.create_index('uq_asignaciones_efectivo_activa', 'asignaciones', ['efectivo_id'], unique=True,
                    postgresql_where=sa.text('liberado_en IS NULL'))
    op.drop_column('asignaciones', 'fuera_de_turno')
    op.drop_column('asignaciones', 'periodo')
    op.drop_table('licencias')
    op.drop_table('turnos')
    # btree_gist stays: other objects may use it and dropping an extension needs more rights than creating.
