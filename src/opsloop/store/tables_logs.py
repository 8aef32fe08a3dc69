"""The logs part's tables, on the one metadata of opsloop.store.tables.

Migration: ``migrations/versions/0008_logs.py``.

Per log source: its template miner's state and detector bookkeeping (``log_sources``),
its templates with their totals and two example lines (``log_templates``), how many
lines each template had in each time window (``log_counts``: a row only where the count
is not zero), its sessions' template counts and opening sequence (``log_sessions``) and
the template-to-template transitions its sessions showed (``log_transitions``). Raw lines
are not kept beyond the examples: counts are what the detectors read.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from opsloop.store.tables import MAX_NAME_LENGTH, metadata

# One row per source. ``miner`` is the template miner's JSON (TemplateMiner.to_dict),
# rewritten when its templates change (``miner_revision``); ``revision`` counts every
# change to the source's state, so a process holding it in memory knows when to reload.
# ``closed_until``: windows that end at or before it have been checked for rate changes.
# ``state``: the detectors' JSON bookkeeping (which templates are in a rate anomaly,
# when an event was last raised), for dedup.
log_sources = Table(
    "log_sources",
    metadata,
    Column("source", String(MAX_NAME_LENGTH), primary_key=True),
    Column("session_pattern", Text, nullable=True),
    Column("miner", LargeBinary, nullable=False),
    Column("miner_revision", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("first_time", BigInteger, nullable=True),
    Column("last_time", BigInteger, nullable=True),
    Column("last_ingest_time", BigInteger, nullable=False),
    Column("closed_until", BigInteger, nullable=True),
    Column("lines", BigInteger, nullable=False),
    Column("bad_lines", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
)

# A template as the source's miner has it now. ``merged_into``: the miner fused it into
# that template (its counts moved there). ``example``: the first line it matched;
# ``last_example``: the latest (both cut to 2000 characters).
log_templates = Table(
    "log_templates",
    metadata,
    Column("source", String(MAX_NAME_LENGTH), nullable=False),
    Column("template_id", Integer, nullable=False),
    Column("template", Text, nullable=False),
    Column("first_time", BigInteger, nullable=False),
    Column("last_time", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("example", Text, nullable=False),
    Column("last_example", Text, nullable=False),
    Column("merged_into", Integer, nullable=True),
    PrimaryKeyConstraint("source", "template_id"),
    Index("ix_log_templates_first", "source", "first_time"),
)

# Lines per template per window (``window_start``, ms; the window's length is the
# ingestor's). No row means zero.
log_counts = Table(
    "log_counts",
    metadata,
    Column("source", String(MAX_NAME_LENGTH), nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("template_id", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("source", "window_start", "template_id"),
    Index("ix_log_counts_template", "source", "template_id", "window_start"),
)

# A session (a block, a request, a trace: an id found in its lines). ``templates``: JSON
# {template id: lines}; ``sequence``: JSON list of its first template ids (capped);
# ``last_template``: where its next transition starts; ``score``: the lowest transition
# probability it showed; ``flagged``: it was reported as unusual (once per session).
log_sessions = Table(
    "log_sessions",
    metadata,
    Column("source", String(MAX_NAME_LENGTH), nullable=False),
    Column("session_id", String(MAX_NAME_LENGTH), nullable=False),
    Column("first_time", BigInteger, nullable=False),
    Column("last_time", BigInteger, nullable=False),
    Column("lines", BigInteger, nullable=False),
    Column("last_template", Integer, nullable=False),
    Column("templates", Text, nullable=False),
    Column("sequence", Text, nullable=False),
    Column("score", Float, nullable=True),
    Column("flagged", Boolean, nullable=False),
    PrimaryKeyConstraint("source", "session_id"),
    Index("ix_log_sessions_last", "source", "last_time"),
)

# How often a session went from template ``prev`` to template ``next`` (``prev`` 0: the
# session's first line): the sequence detector's Markov model, learned online.
log_transitions = Table(
    "log_transitions",
    metadata,
    Column("source", String(MAX_NAME_LENGTH), nullable=False),
    Column("prev", Integer, nullable=False),
    Column("next", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("source", "prev", "next"),
)
