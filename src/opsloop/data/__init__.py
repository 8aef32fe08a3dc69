"""Datasets: versioned, content-addressed tables with a schema and a profile.

A dataset is a name (``sensors``) with versions numbered 1, 2, 3 (``sensors@3``).
Each version is the table's canonical Parquet in the artifact store, named by its
SHA-256, with its schema, row count, profile, source, and the run that produced
it. The profile is what ``diff`` compares and what monitoring uses as its drift
reference. Example::

    import opsloop.data

    dv = opsloop.data.register(df, "sensors", description="hourly readings")
    df = opsloop.data.get("sensors@1")                 # or version=..., as_="arrow"
    opsloop.data.versions("sensors"), opsloop.data.list_datasets()
    opsloop.data.diff("sensors@1", "sensors@2")

The modules: ``datasets`` (these functions), ``service`` (``DatasetService``, the
logic on a store), ``canonical`` (inputs -> canonical table -> Parquet + digest),
``profile``, ``compare`` (diffs of versions), ``refs`` (names and ``name@version``), ``entities``.
"""

from opsloop.data.compare import ColumnShift, DatasetDiff
from opsloop.data.datasets import (
    diff,
    get,
    get_version,
    list_datasets,
    register,
    set_validation_report,
    versions,
)
from opsloop.data.entities import ColumnSchema, Dataset, DatasetVersion
from opsloop.data.profile import ColumnProfile, DatasetProfile, profile_table
from opsloop.data.refs import parse_ref
from opsloop.data.service import DatasetService

__all__ = [
    "ColumnProfile",
    "ColumnSchema",
    "ColumnShift",
    "Dataset",
    "DatasetDiff",
    "DatasetProfile",
    "DatasetService",
    "DatasetVersion",
    "diff",
    "get",
    "get_version",
    "list_datasets",
    "parse_ref",
    "profile_table",
    "register",
    "set_validation_report",
    "versions",
]
