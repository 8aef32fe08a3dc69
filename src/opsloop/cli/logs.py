"""``opsloop logs``: log template mining on the command line.

A face: it reads lines, calls ``opsloop.aiops.logs`` and prints; the miner is imported
inside the command so that ``opsloop --help`` stays quick.
"""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Iterator

app = typer.Typer(help="Logs: mine templates from raw log lines.", no_args_is_help=True)

# Longest line read whole; the rest of a longer line is skipped (constant memory).
MAX_LINE_BYTES = 1 << 20
FLUSH_SECONDS = 0.2


class Format(StrEnum):
    templates = "templates"
    json = "json"
    summary = "summary"


def _lines(fh: IO[bytes]) -> Iterator[tuple[bytes, int]]:
    """Raw lines with how many bytes were skipped from each (beyond MAX_LINE_BYTES)."""
    readline = fh.readline
    while True:
        raw = readline(MAX_LINE_BYTES)
        if not raw:
            return
        skipped = 0
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:
                rest = readline(MAX_LINE_BYTES)
                skipped += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
        yield raw, skipped


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
        fh: IO[bytes] = sys.stdin.buffer
    else:
        try:
            fh = open(file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InvalidInput(f"cannot read {file}: {exc.strerror}") from exc
    out = sys.stdout
    write = out.write
    bad = 0
    last_flush = time.monotonic()
    try:
        for n, (raw, skipped) in enumerate(_lines(fh), start=1):
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
            if fmt is not Format.summary:
                now = time.monotonic()
                if now - last_flush > FLUSH_SECONDS:
                    out.flush()
                    last_flush = now
        if fmt is Format.summary:
            templates = sorted(miner.templates, key=lambda t: (-t.count, t.id))
            for t in templates:
                write(f"{t.count:>10}  {t.id:>6}  {t.template}\n")
            write(f"{len(templates)} templates; {bad} bad lines\n")
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, keep what was learned.
        sys.stderr.close()
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
        if state is not None:
            save_miner(miner, state)
