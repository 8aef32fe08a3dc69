"""The records of the data part: dataset names, their versions and their schemas.

They are plain frozen dataclasses so that every face (Python, REST, CLI) and every
other part (pipelines, monitoring) can hold them without touching the store.
``to_dict`` gives the JSON shape the faces send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from opsloop.data.profile import DatasetProfile


@dataclass(frozen=True, slots=True)
class ColumnSchema:
    """One column: its name, its Arrow type (as Arrow prints it) and whether it may be null."""

    name: str
    type: str
    nullable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "nullable": self.nullable}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnSchema:
        return cls(str(d["name"]), str(d["type"]), bool(d.get("nullable", True)))


def schema_to_json(columns: tuple[ColumnSchema, ...]) -> str:
    """The stored form of a schema: ``{"columns": [{"name", "type", "nullable"}, ...]}``."""
    return json.dumps({"columns": [c.to_dict() for c in columns]}, separators=(",", ":"))


def schema_from_json(text: str) -> tuple[ColumnSchema, ...]:
    return tuple(ColumnSchema.from_dict(c) for c in json.loads(text)["columns"])


@dataclass(frozen=True)
class DatasetVersion:
    """One registered version of a dataset (``sensors@3``).

    ``digest`` is the SHA-256 of the version's canonical Parquet bytes, which are
    stored at ``artifact_path`` in the artifact store. ``run_id`` is the run that was
    active when it was registered (the run that produced it), ``produced_by_step``
    the pipeline step that did, if any. ``is_new`` says whether the call that
    returned this record stored it (False: the same content was registered before
    and this is that version); it is not part of the stored record.
    """

    name: str
    version: int
    digest: str
    schema: tuple[ColumnSchema, ...]
    num_rows: int
    size_bytes: int
    profile: DatasetProfile
    description: str
    source_type: str
    source: str
    creation_time: int
    artifact_path: str
    run_id: str | None = None
    produced_by_step: str | None = None
    validation_report: dict[str, Any] | None = None
    is_new: bool = field(default=False, compare=False)

    @property
    def ref(self) -> str:
        """How other parts name this version: ``"sensors@3"``."""
        return f"{self.name}@{self.version}"

    @property
    def num_columns(self) -> int:
        return len(self.schema)

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.schema]

    def schema_json(self) -> str:
        return schema_to_json(self.schema)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "digest": self.digest,
            "schema": [c.to_dict() for c in self.schema],
            "num_rows": self.num_rows,
            "num_columns": self.num_columns,
            "size_bytes": self.size_bytes,
            "profile": self.profile.to_dict(),
            "description": self.description,
            "source_type": self.source_type,
            "source": self.source,
            "creation_time": self.creation_time,
            "artifact_path": self.artifact_path,
            "run_id": self.run_id,
            "produced_by_step": self.produced_by_step,
            "validation_report": self.validation_report,
        }


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset name with a summary of its latest version (what ``list_datasets`` gives)."""

    name: str
    description: str
    creation_time: int
    last_updated_time: int
    num_versions: int
    latest_version: int
    latest_digest: str
    num_rows: int
    num_columns: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "creation_time": self.creation_time,
            "last_updated_time": self.last_updated_time,
            "num_versions": self.num_versions,
            "latest_version": self.latest_version,
            "latest_digest": self.latest_digest,
            "num_rows": self.num_rows,
            "num_columns": self.num_columns,
        }
