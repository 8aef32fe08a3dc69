"""datasets: names and their numbered, content-addressed versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:12:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_names",
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dataset_names")),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("artifact_path", sa.String(length=1024), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("num_rows", sa.BigInteger(), nullable=False),
        sa.Column("num_columns", sa.Integer(), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source_type", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("produced_by_step", sa.String(length=250), nullable=True),
        sa.Column("validation_report", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["name"],
            ["dataset_names.name"],
            name=op.f("fk_dataset_versions_name_dataset_names"),
            onupdate="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_dataset_versions")),
    )
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_versions_digest", ["digest"], unique=False)
        batch_op.create_index("ix_dataset_versions_name_digest", ["name", "digest"], unique=True)
        batch_op.create_index("ix_dataset_versions_run", ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_versions_run")
        batch_op.drop_index("ix_dataset_versions_name_digest")
        batch_op.drop_index("ix_dataset_versions_digest")

    op.drop_table("dataset_versions")
    op.drop_table("dataset_names")
