"""The monitoring part's tables, on the one metadata of opsloop.store.tables.

Migration: ``migrations/versions/0006_monitoring.py``.

``monitors``: one row per monitor (a deployment watched against a reference dataset
version, every ``every_ms``, over the last ``window_ms`` of its prediction log);
``config`` is JSON (checks, thresholds, columns). ``next_run_time`` is the next slot
the server's monitor scheduler runs it at; a run moves it on with a conditional
update, so two schedulers never both store the same slot.

``monitor_runs``: one row per run (a window checked): its status (``ok``, ``alert``,
``no_data``, ``failed``), the rows read, a JSON summary, and the alert event it raised.

``monitor_results``: the time series, one row per run, check and signal (a column's
drift statistic and p-value, a performance metric, a quality check's failing share),
with the threshold used and whether it alerted.
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
    String,
    Table,
    Text,
)

from opsloop.store.tables import MAX_NAME_LENGTH, metadata

monitors = Table(
    "monitors",
    metadata,
    Column("name", String(MAX_NAME_LENGTH), primary_key=True),
    Column("deployment", String(MAX_NAME_LENGTH), nullable=False),
    Column("reference", String(MAX_NAME_LENGTH), nullable=False),
    Column("checks", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("every_ms", BigInteger, nullable=False),
    Column("window_ms", BigInteger, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("next_run_time", BigInteger, nullable=True),
    Column("description", Text, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Index("ix_monitors_deployment", "deployment"),
)

monitor_runs = Table(
    "monitor_runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "monitor",
        String(MAX_NAME_LENGTH),
        ForeignKey("monitors.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("trigger", String(16), nullable=False),
    Column("run_time", BigInteger, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("window_end", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("num_rows", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("event_id", Integer, nullable=True),
    Column("summary", Text, nullable=False),
    Index("ix_monitor_runs_monitor", "monitor", "window_end"),
)

monitor_results = Table(
    "monitor_results",
    metadata,
    Column("result_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        Integer,
        ForeignKey("monitor_runs.run_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("monitor", String(MAX_NAME_LENGTH), nullable=False),
    Column("window_end", BigInteger, nullable=False),
    Column("check", String(32), nullable=False),
    Column("signal", String(MAX_NAME_LENGTH), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("value", Float, nullable=True),
    Column("p_value", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("alert", Boolean, nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_monitor_results_monitor", "monitor", "window_end"),
    Index("ix_monitor_results_run", "run_id"),
)
