"""``opsloop db``: the metadata database."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(help="The metadata database: migrations and where it is.", no_args_is_help=True)
console = Console()


@app.command()
def upgrade() -> None:
    """Apply pending migrations to the metadata database."""
    from opsloop.core.config import Settings
    from opsloop.store.db import Database

    settings = Settings.from_env()
    db = Database(settings.database_url)
    before = db.current_revision()
    after = db.upgrade()
    where = settings.redacted_database_url()
    if before == after:
        console.print(f"{where}: already at revision {after}")
    else:
        console.print(f"{where}: upgraded from {before or 'empty'} to revision {after}")


@app.command()
def info() -> None:
    """Print where the metadata and artifact stores are."""
    from opsloop.core.config import Settings

    s = Settings.from_env()
    console.print(f"metadata:  {s.redacted_database_url()}\nartifacts: {s.artifacts_url}")
