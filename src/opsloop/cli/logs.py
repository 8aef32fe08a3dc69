"""``opsloop logs``: log template mining on the command line.

A face: it reads lines, calls ``opsloop.aiops.logs`` and prints; the miner is imported
inside the command so that ``opsloop --help`` stays quick.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

app = typer.Typer(help="Logs: mine templates from raw log lines.", no_args_is_help=True)

# Longest line read whole; the rest of a longer line is skipped (constant memory).
MAX_LINE_BYTES = 1 << 20
READ_BYTES = 1 << 16


class Format(StrEnum):
    templates = "templates"
    json = "json"
    summary = "summary"


def _lines(fd: int, before_read: Callable[[], None]) -> Iterator[tuple[bytes, int]]:
    """Lines of a file descriptor (without their ``\\n``), each with how many of its
    bytes were skipped beyond ``MAX_LINE_BYTES`` (memory stays constant).

    ``before_read`` runs before every read that may wait for input (the output is
    flushed there, so ``tail -f app.log | opsloop logs parse -`` prints as lines come
    and a file is still written in large blocks)."""
    partial = b""
    skipped = 0
    while True:
        before_read()
        chunk = os.read(fd, READ_BYTES)
        if not chunk:
            break
        parts = chunk.split(b"\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            room = MAX_LINE_BYTES - len(partial)
            if len(part) > room:
                skipped += len(part) - room
                part = part[:room]
            partial = partial + part if partial else part
            if not last:
                yield partial, skipped
                partial, skipped = b"", 0
    if partial or skipped:
        yield partial, skipped


@app.command("parse")
def parse(
    file: Annotated[str, typer.Argument(help="A log file, or - for standard input.")],
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="templates: each line's template, one per input line; json: JSON lines "
            "with the template id, template and parameters; summary: templates with counts.",
        ),
    ] = Format.templates,
    state: Annotated[
        Path | None,
        typer.Option(help="Template store (JSON) to start from and save back to."),
    ] = None,
) -> None:
    """Turn raw log lines into templates, one line at a time, in order.

    Bad lines (empty, binary, undecodable) never stop the stream: `templates` prints
    `<bad line: REASON>` in their place, `json` an object with `error`.
    """
    import orjson

    from opsloop.aiops.logs import BadLine, TemplateMiner, decode_line
    from opsloop.aiops.logs.store import load_miner, save_miner
    from opsloop.errors import InvalidInput

    miner = load_miner(state) if state is not None else TemplateMiner()
    if file == "-":
        fd = sys.stdin.fileno()
    else:
        if os.path.isdir(file):
            raise InvalidInput(f"cannot read {file}: it is a folder; give a log file or -")
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError as exc:
            raise InvalidInput(f"cannot read {file}: {exc.strerror}") from exc
    out = sys.stdout
    write = out.write
    bad = 0
    try:
        for n, (raw, skipped) in enumerate(_lines(fd, out.flush), start=1):
            dec = decode_line(raw)
            if isinstance(dec, BadLine):
                bad += 1
                if fmt is Format.templates:
                    write(f"<bad line: {dec.reason}>\n")
                elif fmt is Format.json:
                    write(orjson.dumps({"line": n, "error": dec.reason}).decode() + "\n")
                continue
            t = miner.add(dec.text)
            if fmt is Format.templates:
                write(t.template + "\n")
            elif fmt is Format.json:
                rec: dict[str, object] = {
                    "line": n,
                    "template_id": t.id,
                    "template": t.template,
                    "parameters": miner.parameters(dec.text, t),
                }
                warning = dec.warning
                if skipped:
                    note = f"{skipped} bytes beyond {MAX_LINE_BYTES} skipped"
                    warning = f"{warning}; {note}" if warning else note
                if warning:
                    rec["warning"] = warning
                write(orjson.dumps(rec).decode() + "\n")
        if fmt is Format.summary:
            templates = sorted(miner.templates, key=lambda t: (-t.count, t.id))
            for t in templates:
                write(f"{t.count:>10}  {t.id:>6}  {t.template}\n")
            write(f"{len(templates)} templates; {bad} bad lines\n")
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, keep what was learned.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    finally:
        if file != "-":
            os.close(fd)
        if state is not None:
            save_miner(miner, state)


@app.command("merge")
def merge(
    into: Annotated[Path, typer.Argument(help="Template store to merge into (made if missing).")],
    others: Annotated[list[Path], typer.Argument(help="Template stores to take in.")],
) -> None:
    """Merge template stores into one: equal templates become one, new ones get new ids.

    Prints one JSON object per store taken in: its path and the map from its template
    ids to the ids in INTO (ids already in INTO do not change).
    """
    import orjson

    from opsloop.aiops.logs.store import load_miner, save_miner
    from opsloop.errors import NotFound

    target = load_miner(into)
    for other in others:
        if not other.exists():
            raise NotFound(f"template store {other} does not exist")
        mapping = target.merge(load_miner(other))
        typer.echo(
            orjson.dumps(
                {"store": str(other), "ids": {str(k): v for k, v in sorted(mapping.items())}}
            ).decode()
        )
    save_miner(target, into)
