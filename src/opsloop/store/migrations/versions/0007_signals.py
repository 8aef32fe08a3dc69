"""signals: the signals part's tables (see opsloop.store.tables_signals)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 10:07:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signal_series",
        sa.Column("series_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("labels_hash", sa.String(length=64), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_time", sa.BigInteger(), nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("series_id", name=op.f("pk_signal_series")),
    )
    with op.batch_alter_table("signal_series", schema=None) as batch_op:
        batch_op.create_index("ix_signal_series_hash", ["labels_hash"], unique=True)
        batch_op.create_index("ix_signal_series_name", ["name"], unique=False)
    op.create_table(
        "signal_chunks",
        sa.Column(
            "chunk_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("min_time", sa.BigInteger(), nullable=False),
        sa.Column("max_time", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("stamps", sa.LargeBinary(), nullable=False),
        sa.Column("vals", sa.LargeBinary(), nullable=False),
        sa.Column("merged", sa.Boolean(), nullable=False),
        sa.Column("ingest_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["signal_series.series_id"],
            name=op.f("fk_signal_chunks_series_id_signal_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chunk_id", name=op.f("pk_signal_chunks")),
    )
    with op.batch_alter_table("signal_chunks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_signal_chunks_series_time", ["series_id", "max_time"], unique=False
        )
        batch_op.create_index("ix_signal_chunks_ingest", ["merged", "ingest_time"], unique=False)
    op.create_table(
        "signal_scrape_targets",
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("job", sa.String(length=250), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("interval_ms", sa.BigInteger(), nullable=False),
        sa.Column("timeout_ms", sa.BigInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_scrape_time", sa.BigInteger(), nullable=True),
        sa.Column("last_duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_samples", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_signal_scrape_targets")),
    )
    op.create_table(
        "signal_limits",
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("selector", sa.Text(), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("horizon_ms", sa.BigInteger(), nullable=False),
        sa.Column("window_ms", sa.BigInteger(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("min_points", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("checked_chunk", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_signal_limits")),
    )
    op.create_table(
        "signal_limit_states",
        sa.Column("limit_name", sa.String(length=250), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("since_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["limit_name"],
            ["signal_limits.name"],
            name=op.f("fk_signal_limit_states_limit_name_signal_limits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("limit_name", "series_id", name=op.f("pk_signal_limit_states")),
    )

    op.create_table(
        "signal_detector_states",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("last_time", sa.BigInteger(), nullable=True),
        sa.Column("last_score", sa.Float(), nullable=True),
        sa.Column("last_alert_time", sa.BigInteger(), nullable=True),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["signal_series.series_id"],
            name=op.f("fk_signal_detector_states_series_id_signal_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("series_id", name=op.f("pk_signal_detector_states")),
    )
    op.create_table(
        "signal_followers",
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_signal_followers")),
    )


def downgrade() -> None:
    op.drop_table("signal_followers")
    op.drop_table("signal_detector_states")
    op.drop_table("signal_limit_states")
    op.drop_table("signal_limits")
    op.drop_table("signal_scrape_targets")
    with op.batch_alter_table("signal_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_signal_chunks_ingest")
        batch_op.drop_index("ix_signal_chunks_series_time")
    op.drop_table("signal_chunks")
    with op.batch_alter_table("signal_series", schema=None) as batch_op:
        batch_op.drop_index("ix_signal_series_name")
        batch_op.drop_index("ix_signal_series_hash")
    op.drop_table("signal_series")
