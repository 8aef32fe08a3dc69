"""logs: the logs part's tables (see opsloop.store.tables_logs)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 10:08:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_sources",
        sa.Column("source", sa.String(length=250), nullable=False),
        sa.Column("session_pattern", sa.Text(), nullable=True),
        sa.Column("miner", sa.LargeBinary(), nullable=False),
        sa.Column("miner_revision", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("first_time", sa.BigInteger(), nullable=True),
        sa.Column("last_time", sa.BigInteger(), nullable=True),
        sa.Column("last_ingest_time", sa.BigInteger(), nullable=False),
        sa.Column("closed_until", sa.BigInteger(), nullable=True),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("bad_lines", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_log_sources")),
    )
    op.create_table(
        "log_templates",
        sa.Column("source", sa.String(length=250), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("first_time", sa.BigInteger(), nullable=False),
        sa.Column("last_time", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("example", sa.Text(), nullable=False),
        sa.Column("last_example", sa.Text(), nullable=False),
        sa.Column("merged_into", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("source", "template_id", name=op.f("pk_log_templates")),
    )
    with op.batch_alter_table("log_templates", schema=None) as batch_op:
        batch_op.create_index("ix_log_templates_first", ["source", "first_time"], unique=False)
    op.create_table(
        "log_counts",
        sa.Column("source", sa.String(length=250), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "source", "window_start", "template_id", name=op.f("pk_log_counts")
        ),
    )
    with op.batch_alter_table("log_counts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_log_counts_template", ["source", "template_id", "window_start"], unique=False
        )
    op.create_table(
        "log_sessions",
        sa.Column("source", sa.String(length=250), nullable=False),
        sa.Column("session_id", sa.String(length=250), nullable=False),
        sa.Column("first_time", sa.BigInteger(), nullable=False),
        sa.Column("last_time", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("last_template", sa.Integer(), nullable=False),
        sa.Column("templates", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("source", "session_id", name=op.f("pk_log_sessions")),
    )
    with op.batch_alter_table("log_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_log_sessions_last", ["source", "last_time"], unique=False)
    op.create_table(
        "log_transitions",
        sa.Column("source", sa.String(length=250), nullable=False),
        sa.Column("prev", sa.Integer(), nullable=False),
        sa.Column("next", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", "prev", "next", name=op.f("pk_log_transitions")),
    )


def downgrade() -> None:
    op.drop_table("log_transitions")
    with op.batch_alter_table("log_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_log_sessions_last")
    op.drop_table("log_sessions")
    with op.batch_alter_table("log_counts", schema=None) as batch_op:
        batch_op.drop_index("ix_log_counts_template")
    op.drop_table("log_counts")
    with op.batch_alter_table("log_templates", schema=None) as batch_op:
        batch_op.drop_index("ix_log_templates_first")
    op.drop_table("log_templates")
    op.drop_table("log_sources")
