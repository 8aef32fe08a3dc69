"""``opsloop deploy``: deployments of registered models (traffic split, canary, shadow,
settings) and their history.

A face: it calls ``opsloop.serving.deployments`` and prints Rich tables; errors reach
``main()``, which prints them and exits with their code. Who acts is ``$OPSLOOP_USER``
or the operating system's user.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opsloop.cli.common import utc_time
from opsloop.errors import InvalidInput

if TYPE_CHECKING:
    from opsloop.serving.deployments import DeploymentService
    from opsloop.serving.entities import Deployment, DeploymentEvent

app = typer.Typer(
    help="Deployments: which model versions serve, canary and shadow, promote, rollback.",
    no_args_is_help=True,
)
console = Console()

Reason = Annotated[str | None, typer.Option("--reason", "-m", help="Why: recorded in the history.")]


def _svc() -> DeploymentService:
    from opsloop.serving.deployments import DeploymentService
    from opsloop.store import default_service

    return default_service(DeploymentService)


def _settings(pairs: list[str], unset: list[str] | None = None) -> dict[str, Any] | None:
    """``KEY=VALUE`` pairs (JSON values parsed: numbers, true/false) and keys to remove."""
    if not pairs and not unset:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"setting {pair!r} is not KEY=VALUE (e.g. max_batch_size=64)")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    for key in unset or []:
        out[key] = None
    return out


def _split(d: Deployment) -> str:
    parts = [f"v{v} {share:g}%" for v, share in d.traffic.items()]
    if d.shadow_version is not None:
        parts.append(f"shadow v{d.shadow_version}")
    return ", ".join(parts)


def _print(d: Deployment, verb: str) -> None:
    console.print(
        f"deployment {escape(d.name)!r} {verb}: {escape(d.model_uri)} → {escape(_split(d))} "
        f"(revision {d.revision})"
    )


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The deployment's name, e.g. churn-api.")],
    model: Annotated[
        str,
        typer.Argument(
            help="models:/NAME@ALIAS (follows the alias), models:/NAME/VERSION, or NAME "
            "with --version."
        ),
    ],
    version: Annotated[int | None, typer.Option(help="The stable version (with NAME).")] = None,
    canary: Annotated[int | None, typer.Option(help="A canary version.")] = None,
    share: Annotated[
        float | None, typer.Option(help="The canary's share of traffic, percent (default 10).")
    ] = None,
    shadow: Annotated[
        int | None, typer.Option(help="A shadow version: gets a copy of every request.")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Serving setting KEY=VALUE, e.g. max_batch_size=64."),
    ] = None,
    description: Annotated[str, typer.Option(help="What it serves.")] = "",
    reason: Reason = None,
) -> None:
    """Deploy a registered model version (or the version an alias names)."""
    d = _svc().create(
        name,
        model,
        version=version,
        canary=canary,
        canary_share=share,
        shadow=shadow,
        settings=_settings(setting or []),
        description=description,
        reason=reason,
    )
    _print(d, "created")


@app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    version: Annotated[
        int | None, typer.Option(help="A new stable version (a pinned deployment).")
    ] = None,
    canary: Annotated[int | None, typer.Option(help="Set the canary version.")] = None,
    share: Annotated[float | None, typer.Option(help="The canary's share, percent.")] = None,
    no_canary: Annotated[bool, typer.Option("--no-canary", help="Remove the canary.")] = False,
    shadow: Annotated[int | None, typer.Option(help="Set the shadow version.")] = None,
    no_shadow: Annotated[bool, typer.Option("--no-shadow", help="Remove the shadow.")] = False,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="Serving setting KEY=VALUE (merged).")
    ] = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", help="Remove a setting.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    reason: Reason = None,
) -> None:
    """Change the canary and its share, the shadow, the settings or a pinned version."""
    from opsloop.serving.deployments import UNSET

    if no_canary and (canary is not None or share is not None):
        raise InvalidInput("--no-canary removes the canary: give no --canary or --share with it")
    if no_shadow and shadow is not None:
        raise InvalidInput("--no-shadow removes the shadow: give no --shadow with it")
    kwargs: dict[str, Any] = {}
    if version is not None:
        kwargs["version"] = version
    if no_canary:
        kwargs["canary"] = None
    elif canary is not None:
        kwargs["canary"] = canary
    if share is not None:
        kwargs["canary_share"] = share
    if no_shadow:
        kwargs["shadow"] = None
    elif shadow is not None:
        kwargs["shadow"] = shadow
    kwargs["description"] = UNSET if description is None else description
    d = _svc().update(name, settings=_settings(setting or [], unset), reason=reason, **kwargs)
    _print(d, "updated")


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Deployment name.")], reason: Reason = None
) -> None:
    """The canary becomes the stable version at 100% (a followed alias moves to it)."""
    _print(_svc().promote(name, reason=reason), "promoted")


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Deployment name.")], reason: Reason = None
) -> None:
    """Back to the previous stable version in one step (a followed alias moves back)."""
    _print(_svc().rollback(name, reason=reason), "rolled back")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Deployment name.")], reason: Reason = None
) -> None:
    """Delete a deployment and its history (its prediction log stays; the server that
    `opsloop server` runs for it stops)."""
    _svc().delete(name, reason=reason)
    console.print(f"deployment {escape(name)!r} deleted")


@app.command("ls")
def ls() -> None:
    """List deployments with their traffic split."""
    table = Table(title="deployments")
    for col in ("name", "model", "traffic", "revision", "updated"):
        table.add_column(col)
    for d in _svc().list():
        table.add_row(
            escape(d.name),
            escape(d.model_uri),
            escape(_split(d)),
            str(d.revision),
            utc_time(d.last_updated_time),
        )
    console.print(table)


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Deployment name.")]) -> None:
    """Show a deployment: what it serves, its settings, its latest changes."""
    svc = _svc()
    r = svc.resolve(name)
    d = svc.get(name)
    console.print(f"[bold]{escape(d.name)}[/bold]  {escape(d.model_uri)}  revision {d.revision}")
    if d.description:
        console.print(escape(d.description))
    for t in r.served:
        console.print(f"  {t.role:<7} v{t.version}  {t.share:g}%  {escape(t.uri)}")
    if r.shadow is not None:
        console.print(f"  shadow  v{r.shadow.version}  (copy of every request)")
    if r.warning:
        console.print(f"[yellow]warning:[/yellow] {escape(r.warning)}")
    console.print(escape(f"settings: {json.dumps(r.settings, sort_keys=True)}"))
    if d.settings.get("port") is not None:
        from opsloop.serving.supervisor import server_state

        state = server_state(svc.store, name)
        if state is None:
            console.print(
                f"server: port {d.settings['port']}, not running (opsloop server starts it)"
            )
        else:
            console.print(
                escape(
                    f"server: {state['status']} at {state['url']} (pid {state['pid']}, "
                    f"{state['restarts']} restarts; log {state['log']})"
                )
            )
    console.print(
        f"created {utc_time(d.creation_time)} by {escape(d.created_by)}; "
        f"prediction log: artifacts under predictions/{escape(d.name)}/"
    )
    _print_events(svc.history(name, 10), "latest changes")


def _print_events(events: list[DeploymentEvent], title: str) -> None:
    table = Table(title=title)
    for col in ("rev", "when", "action", "who", "traffic after", "reason"):
        table.add_column(col)
    for e in events:
        split = f"v{e.stable_version}"
        if e.canary_version is not None:
            split += f" + canary v{e.canary_version} {e.canary_share or 0:g}%"
        if e.shadow_version is not None:
            split += f", shadow v{e.shadow_version}"
        table.add_row(
            str(e.revision),
            utc_time(e.time),
            e.action,
            escape(e.who),
            escape(split),
            escape(e.reason),
        )
    console.print(table)


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    limit: Annotated[int, typer.Option(help="Changes shown, newest first.")] = 50,
) -> None:
    """Every change of a deployment: when, who, why, and the traffic after it."""
    _print_events(_svc().history(name, limit), f"history of {name!r}")
