"""``opsloop models``: the model registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from opsloop.registry.service import RegistryService


app = typer.Typer(help="Registered models, versions and aliases.", no_args_is_help=True)
console = Console()


def _registry() -> RegistryService:
    from opsloop.registry.service import RegistryService
    from opsloop.store import default_store

    return RegistryService(default_store())


@app.command("ls")
def ls() -> None:
    """List registered models with their aliases."""
    page = _registry().search_registered_models(max_results=1000)
    table = Table(title="registered models")
    for col in ("name", "latest version", "aliases", "description"):
        table.add_column(col)
    for m in page.items:
        latest = max((int(v.version) for v in m.latest_versions), default=0)
        aliases = ", ".join(f"{a}→v{ver}" for a, ver in sorted(m.aliases.items()))
        table.add_row(m.name, str(latest or "-"), aliases, m.description)
    console.print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """Show a model's versions."""
    page = _registry().search_model_versions(f"name = '{name.replace(chr(39), chr(39) * 2)}'")
    table = Table(title=f"versions of {name!r}")
    for col in ("version", "aliases", "flavor", "run", "source"):
        table.add_column(col)
    for mv in page.items:
        table.add_row(
            mv.version, ", ".join(mv.aliases), mv.flavor or "", mv.run_id or "", mv.source
        )
    console.print(table)


@app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    alias_name: Annotated[str, typer.Argument(help="Alias, e.g. production.")],
    version: Annotated[int, typer.Argument(help="Version the alias should point at.")],
) -> None:
    """Point an alias at a version (atomically)."""
    _registry().set_registered_model_alias(name, alias_name, version)
    console.print(f"{name}@{alias_name} → version {version}")
