"""pipeline schedules: schedules, their fires, and the scheduler's lease

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_schedules",
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("workdir", sa.Text(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("cron", sa.String(length=250), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("on_dataset", sa.String(length=250), nullable=True),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("max_active", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("next_fire_time", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", name=op.f("pk_pipeline_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_pipeline_schedules_name")),
    )
    op.create_table(
        "pipeline_schedule_fires",
        sa.Column("fire_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fire_time", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_time", sa.BigInteger(), nullable=True),
        sa.Column("start_time", sa.BigInteger(), nullable=True),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat_time", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["pipeline_schedules.schedule_id"],
            name=op.f("fk_pipeline_schedule_fires_schedule_id_pipeline_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("fire_id", name=op.f("pk_pipeline_schedule_fires")),
    )
    with op.batch_alter_table("pipeline_schedule_fires", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pipeline_schedule_fires_schedule", ["schedule_id", "fire_id"], unique=False
        )
        batch_op.create_index("ix_pipeline_schedule_fires_status", ["status"], unique=False)
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=250), nullable=False),
        sa.Column("acquired_time", sa.BigInteger(), nullable=False),
        sa.Column("expires_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_leases")),
    )


def downgrade() -> None:
    op.drop_table("scheduler_leases")
    with op.batch_alter_table("pipeline_schedule_fires", schema=None) as batch_op:
        batch_op.drop_index("ix_pipeline_schedule_fires_status")
        batch_op.drop_index("ix_pipeline_schedule_fires_schedule")
    op.drop_table("pipeline_schedule_fires")
    op.drop_table("pipeline_schedules")
