"""The signals part's tables, on the one metadata of opsloop.store.tables.

Migration: ``migrations/versions/0007_signals.py``.

A series is a name and a label set (``signal_series``, found by the hash of both);
its points live in packed chunks (``signal_chunks``): int64 ms timestamps and float64
values, one chunk per series per ingested batch, merged later into chunks of
thousands of points (``merged``) once they have settled. Scrape targets, limits (an
SLO a forecast watches) and each limit's state per series sit beside them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from opsloop.store.tables import MAX_NAME_LENGTH, metadata

# Chunk ids grow with every batch and every merge: 64 bits on PostgreSQL; SQLite's
# INTEGER PRIMARY KEY (the rowid) is 64 bits already.
_ID = BigInteger().with_variant(Integer(), "sqlite")

signal_series = Table(
    "signal_series",
    metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("labels", Text, nullable=False),
    Column("labels_hash", String(64), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_time", BigInteger, nullable=True),
    Column("last_value", Float, nullable=True),
    Index("ix_signal_series_hash", "labels_hash", unique=True),
    Index("ix_signal_series_name", "name"),
)

signal_chunks = Table(
    "signal_chunks",
    metadata,
    Column("chunk_id", _ID, primary_key=True, autoincrement=True),
    Column(
        "series_id",
        Integer,
        ForeignKey("signal_series.series_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("min_time", BigInteger, nullable=False),
    Column("max_time", BigInteger, nullable=False),
    Column("n", Integer, nullable=False),
    Column("encoding", String(16), nullable=False),
    Column("stamps", LargeBinary, nullable=False),
    Column("vals", LargeBinary, nullable=False),
    Column("merged", Boolean, nullable=False),
    Column("ingest_time", BigInteger, nullable=False),
    Index("ix_signal_chunks_series_time", "series_id", "max_time"),
    Index("ix_signal_chunks_ingest", "merged", "ingest_time"),
)

signal_scrape_targets = Table(
    "signal_scrape_targets",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), primary_key=True),
    Column("url", Text, nullable=False),
    Column("job", String(MAX_NAME_LENGTH), nullable=False),
    Column("labels", Text, nullable=False),
    Column("interval_ms", BigInteger, nullable=False),
    Column("timeout_ms", BigInteger, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_scrape_time", BigInteger, nullable=True),
    Column("last_duration_ms", BigInteger, nullable=True),
    Column("last_samples", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
)

signal_limits = Table(
    "signal_limits",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), primary_key=True),
    Column("selector", Text, nullable=False),
    Column("op", String(8), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("horizon_ms", BigInteger, nullable=False),
    Column("window_ms", BigInteger, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("min_points", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    # The newest chunk the checker has looked at: it evaluates series with newer ones.
    Column("checked_chunk", BigInteger, nullable=False),
)

signal_limit_states = Table(
    "signal_limit_states",
    metadata,
    Column(
        "limit_name",
        String(MAX_NAME_LENGTH),
        ForeignKey("signal_limits.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("series_id", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("since_time", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
    Column("detail", Text, nullable=False),
    PrimaryKeyConstraint("limit_name", "series_id"),
)

# Streaming anomaly detection on every series: each series' detector state (pickled,
# a few kB), the last score, and when it last raised an event; one row per follower
# (``signal_followers``) holds the newest chunk it has read.
signal_detector_states = Table(
    "signal_detector_states",
    metadata,
    Column(
        "series_id",
        Integer,
        ForeignKey("signal_series.series_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("state", LargeBinary, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("last_time", BigInteger, nullable=True),
    Column("last_score", Float, nullable=True),
    Column("last_alert_time", BigInteger, nullable=True),
    Column("updated_time", BigInteger, nullable=False),
)

signal_followers = Table(
    "signal_followers",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), primary_key=True),
    Column("cursor", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
)
