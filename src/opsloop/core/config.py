"""Where opsloop keeps its things, read from the environment.

``OPSLOOP_HOME`` (default ``./.opsloop``) holds the embedded store: ``opsloop.db``
(SQLite, WAL) and ``artifacts/``. ``OPSLOOP_DATABASE_URL`` points the metadata store
elsewhere (``postgresql+psycopg://user@host/db``), ``OPSLOOP_ARTIFACTS`` the artifact
store (``s3://bucket/prefix`` or any fsspec URL).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    artifacts_url: str

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("OPSLOOP_HOME") or ".opsloop").expanduser().absolute()
        db = os.environ.get("OPSLOOP_DATABASE_URL") or f"sqlite:///{home / 'opsloop.db'}"
        art = os.environ.get("OPSLOOP_ARTIFACTS") or str(home / "artifacts")
        return cls(home=home, database_url=db, artifacts_url=art)

    def redacted_database_url(self) -> str:
        """The database URL without a password, for printing."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)
