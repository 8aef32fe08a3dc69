"""deployments: deployments, their change history, the prediction log's segments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("model", sa.String(length=250), nullable=False),
        sa.Column("alias", sa.String(length=250), nullable=True),
        sa.Column("stable_version", sa.Integer(), nullable=False),
        sa.Column("canary_version", sa.Integer(), nullable=True),
        sa.Column("canary_share", sa.Float(), nullable=True),
        sa.Column("shadow_version", sa.Integer(), nullable=True),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=250), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_deployments")),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index("ix_deployments_model", ["model"], unique=False)
    op.create_table(
        "deployment_events",
        sa.Column("event_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=250), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("event_time", sa.BigInteger(), nullable=False),
        sa.Column("who", sa.String(length=250), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("stable_version", sa.Integer(), nullable=False),
        sa.Column("canary_version", sa.Integer(), nullable=True),
        sa.Column("canary_share", sa.Float(), nullable=True),
        sa.Column("shadow_version", sa.Integer(), nullable=True),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment"],
            ["deployments.name"],
            name=op.f("fk_deployment_events_deployment_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_deployment_events")),
    )
    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deployment_events_deployment", ["deployment", "event_id"], unique=False
        )
    op.create_table(
        "prediction_segments",
        sa.Column("segment_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=250), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("min_time", sa.BigInteger(), nullable=False),
        sa.Column("max_time", sa.BigInteger(), nullable=False),
        sa.Column("num_rows", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("artifact_path", sa.String(length=1024), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", name=op.f("pk_prediction_segments")),
    )
    with op.batch_alter_table("prediction_segments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prediction_segments_min", ["deployment", "min_time"], unique=False
        )
        batch_op.create_index(
            "ix_prediction_segments_max", ["deployment", "max_time"], unique=False
        )
    op.create_table(
        "prediction_label_segments",
        sa.Column("segment_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=250), nullable=False),
        sa.Column("min_time", sa.BigInteger(), nullable=False),
        sa.Column("max_time", sa.BigInteger(), nullable=False),
        sa.Column("num_rows", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("artifact_path", sa.String(length=1024), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("segment_id", name=op.f("pk_prediction_label_segments")),
    )
    with op.batch_alter_table("prediction_label_segments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prediction_label_segments_max", ["deployment", "max_time"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("prediction_label_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_prediction_label_segments_max")
    op.drop_table("prediction_label_segments")
    with op.batch_alter_table("prediction_segments", schema=None) as batch_op:
        batch_op.drop_index("ix_prediction_segments_max")
        batch_op.drop_index("ix_prediction_segments_min")
    op.drop_table("prediction_segments")
    with op.batch_alter_table("deployment_events", schema=None) as batch_op:
        batch_op.drop_index("ix_deployment_events_deployment")
    op.drop_table("deployment_events")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deployments_model")
    op.drop_table("deployments")
