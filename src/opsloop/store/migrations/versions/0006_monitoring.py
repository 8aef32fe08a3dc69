"""monitoring: monitors, their runs, and their results as time series

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:06:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("deployment", sa.String(length=250), nullable=False),
        sa.Column("reference", sa.String(length=250), nullable=False),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("every_ms", sa.BigInteger(), nullable=False),
        sa.Column("window_ms", sa.BigInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_time", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_monitors")),
    )
    with op.batch_alter_table("monitors", schema=None) as batch_op:
        batch_op.create_index("ix_monitors_deployment", ["deployment"], unique=False)
    op.create_table(
        "monitor_runs",
        sa.Column("run_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("monitor", sa.String(length=250), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("run_time", sa.BigInteger(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("window_end", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("num_rows", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["monitor"],
            ["monitors.name"],
            name=op.f("fk_monitor_runs_monitor_monitors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_monitor_runs")),
    )
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.create_index("ix_monitor_runs_monitor", ["monitor", "window_end"], unique=False)
    op.create_table(
        "monitor_results",
        sa.Column("result_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("monitor", sa.String(length=250), nullable=False),
        sa.Column("window_end", sa.BigInteger(), nullable=False),
        sa.Column("check", sa.String(length=32), nullable=False),
        sa.Column("signal", sa.String(length=250), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["monitor_runs.run_id"],
            name=op.f("fk_monitor_results_run_id_monitor_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_monitor_results")),
    )
    with op.batch_alter_table("monitor_results", schema=None) as batch_op:
        batch_op.create_index("ix_monitor_results_monitor", ["monitor", "window_end"], unique=False)
        batch_op.create_index("ix_monitor_results_run", ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("monitor_results", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_results_run")
        batch_op.drop_index("ix_monitor_results_monitor")
    op.drop_table("monitor_results")
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_runs_monitor")
    op.drop_table("monitor_runs")
    with op.batch_alter_table("monitors", schema=None) as batch_op:
        batch_op.drop_index("ix_monitors_deployment")
    op.drop_table("monitors")
