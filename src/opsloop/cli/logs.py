"""``opsloop logs``: log template mining, ingestion and anomalies on the command line.

A face: it reads lines (``opsloop.aiops.logs.files``), calls ``opsloop.aiops.logs`` (or
a server's ``/api/v1/logs``) and prints; the miner is imported inside the commands so
that ``opsloop --help`` stays quick.

* ``parse`` / ``merge``: templates of a file, template stores (no opsloop store).
* ``ingest FILE|- --source NAME``: a file's lines into the store (or ``--server URL``).
* ``tail FILE --source NAME``: follow a growing file (rotation and truncation too).
* ``templates SOURCE`` / ``anomalies``: what ingestion found.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import httpx

    from opsloop.aiops.logs.ingest import LogIngestor

app = typer.Typer(
    help="Logs: mine templates, ingest lines, find log anomalies.", no_args_is_help=True
)


class Format(StrEnum):
    templates = "templates"
    json = "json"
    summary = "summary"


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
    from opsloop.aiops.logs.files import MAX_LINE_BYTES, open_input, read_lines
    from opsloop.aiops.logs.store import load_miner, save_miner

    miner = load_miner(state) if state is not None else TemplateMiner()
    fd = open_input(file)
    out = sys.stdout
    write = out.write
    bad = 0
    try:
        for n, (raw, skipped) in enumerate(read_lines(fd, out.flush), start=1):
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


# -- ingestion ------------------------------------------------------------------------


class Stamp(StrEnum):
    auto = "auto"
    now = "now"


BATCH_LINES = 5000
SHOWN_REJECTS = 10


class _Sink:
    """Where ingested batches go: the local store, or a server's ``/api/v1/logs``.

    Lines are decoded here (``decode_line``), so a bad line is reported with its line
    number; to the local store its bytes go as read, so the store counts it too."""

    def __init__(self, source: str, server: str | None, session_pattern: str | None) -> None:
        from opsloop.aiops.logs.ingest import check_source

        self.source = check_source(source)
        self.server = server.rstrip("/") if server else None
        self.pattern = session_pattern
        self.sent = self.accepted = self.rejected = self.new_templates = self.events = 0
        self._ingestor: LogIngestor | None = None
        self._client: httpx.Client | None = None
        if self.server is None:
            from opsloop.aiops.logs.ingest import ingestor_for
            from opsloop.store import default_store

            self._ingestor = ingestor_for(default_store())
        else:
            import httpx

            self._client = httpx.Client(timeout=120.0)

    def send(self, batch: list[tuple[int, int | None, bytes, str | None]]) -> None:
        """Send ``(line number, time, raw bytes, text or None when bad)`` lines."""
        if not batch:
            return
        self.sent += len(batch)
        if self._ingestor is not None:
            result = self._ingestor.ingest(
                self.source,
                [(t, raw if text is None else text) for _, t, raw, text in batch],
                session_pattern=self.pattern,
            )
            rejected = [(batch[i][0], reason) for i, reason in result.rejected]
            self.accepted += result.accepted
            self.new_templates += len(result.new_templates)
            self.events += len(result.events)
        else:
            rejected = self._post(batch)
        self.rejected += len(rejected)
        for n, reason in rejected[: max(0, SHOWN_REJECTS - (self.rejected - len(rejected)))]:
            typer.echo(f"line {n}: rejected: {reason}", err=True)

    def _post(
        self, batch: list[tuple[int, int | None, bytes, str | None]]
    ) -> list[tuple[int, str]]:
        import httpx

        from opsloop.aiops.logs import BadLine, decode_line
        from opsloop.errors import InvalidInput

        rejected: list[tuple[int, str]] = []
        lines: list[dict[str, object]] = []
        numbers: list[int] = []
        for n, t, raw, text in batch:
            if text is None:
                dec = decode_line(raw)
                rejected.append((n, dec.reason if isinstance(dec, BadLine) else "bad line"))
                continue
            lines.append({"line": text} if t is None else {"line": text, "time": t})
            numbers.append(n)
        body: dict[str, object] = {"source": self.source, "lines": lines}
        if self.pattern is not None:
            body["session_pattern"] = self.pattern
        assert self._client is not None
        try:
            r = self._client.post(f"{self.server}/api/v1/logs", json=body)
        except httpx.TransportError as exc:
            raise InvalidInput(f"cannot reach {self.server}: {exc}") from exc
        if r.status_code != 200:
            try:
                message = r.json()["message"]
            except Exception:
                message = r.text[:500]
            raise InvalidInput(f"{self.server} refused the batch ({r.status_code}): {message}")
        out = r.json()
        self.accepted += int(out["accepted"])
        self.new_templates += len(out["new_templates"])
        self.events += len(out["events"])
        rejected += [(numbers[x["index"]], x["reason"]) for x in out["rejected"]]
        return rejected

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def summary(self) -> str:
        where = self.server or "the local store"
        return (
            f"{self.sent} lines to {self.source} in {where}: {self.accepted} accepted, "
            f"{self.rejected} rejected, {self.new_templates} new templates, "
            f"{self.events} anomaly events"
        )


def _stamp(text: str | None, stamps: Stamp, last: list[int]) -> int | None:
    """A line's time: from its text (``auto``; a line without one takes the previous
    line's), or None (``now``: the time it is ingested)."""
    if stamps is Stamp.now or text is None:
        return None
    from opsloop.aiops.logs.timestamps import line_time
    from opsloop.core.ids import now_ms

    t = line_time(text, last[0] if last else now_ms())
    if t is not None:
        if last:
            last[0] = t
        else:
            last.append(t)
    return t


def _decoded(raw: bytes) -> str | None:
    from opsloop.aiops.logs import BadLine, decode_line

    dec = decode_line(raw)
    return None if isinstance(dec, BadLine) else dec.text


SourceOpt = Annotated[str, typer.Option("--source", "-s", help="The log source's name.")]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="Send to this opsloop server (URL) instead of the local store."),
]
PatternOpt = Annotated[
    str | None,
    typer.Option(
        "--session-pattern",
        help="Regex whose first group is a line's session id (default: block, request, "
        "trace and UUID ids).",
    ),
]


@app.command("ingest")
def ingest(
    file: Annotated[str, typer.Argument(help="A log file, or - for standard input.")],
    source: SourceOpt,
    server: ServerOpt = None,
    session_pattern: PatternOpt = None,
    timestamps: Annotated[
        Stamp,
        typer.Option(
            help="auto: each line's time from its text (ISO, syslog, epoch, ...); now: "
            "the time it is read."
        ),
    ] = Stamp.auto,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Lines per batch.")] = BATCH_LINES,
) -> None:
    """Ingest a file's lines into the store: templates, counts per window and session,
    and anomaly events. Bad lines are reported (line number and reason) and skipped."""
    from opsloop.aiops.logs.files import open_input, read_lines

    sink = _Sink(source, server, session_pattern)
    fd = open_input(file)
    last: list[int] = []
    pending: list[tuple[int, int | None, bytes, str | None]] = []
    try:
        for n, (raw, _skipped) in enumerate(read_lines(fd), start=1):
            text = _decoded(raw)
            pending.append((n, _stamp(text, timestamps, last), raw, text))
            if len(pending) >= batch:
                sink.send(pending)
                pending = []
        sink.send(pending)
    finally:
        if file != "-":
            os.close(fd)
        sink.close()
    typer.echo(sink.summary())


@app.command("tail")
def tail(
    file: Annotated[str, typer.Argument(help="The log file to follow.")],
    source: SourceOpt,
    server: ServerOpt = None,
    session_pattern: PatternOpt = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Read what the file holds first.")
    ] = False,
    timestamps: Annotated[
        Stamp, typer.Option(help="now: the time a line is read; auto: from its text.")
    ] = Stamp.now,
    poll: Annotated[float, typer.Option(min=0.01, help="Seconds between looks at the file.")] = 0.5,
    flush: Annotated[
        float, typer.Option(min=0.0, help="Send what was read at least this often (seconds).")
    ] = 1.0,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Lines per batch.")] = BATCH_LINES,
) -> None:
    """Follow a growing log file and ingest its new lines (like `tail -F`: rotation and
    truncation are followed) until interrupted (Ctrl-C or SIGTERM: what was read is
    sent first)."""
    import signal
    import threading
    import time

    from opsloop.aiops.logs.files import Follower

    stop = threading.Event()

    def _stop(_sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sink = _Sink(source, server, session_pattern)
    follower = Follower(file, from_start)
    last: list[int] = []
    n = 0
    pending: list[tuple[int, int | None, bytes, str | None]] = []
    sent_at = time.monotonic()
    try:
        while not stop.is_set():
            got = follower.read()
            for raw, _skipped in got:
                n += 1
                text = _decoded(raw)
                pending.append((n, _stamp(text, timestamps, last), raw, text))
                if len(pending) >= batch:
                    sink.send(pending)
                    pending, sent_at = [], time.monotonic()
            if pending and time.monotonic() - sent_at >= flush:
                sink.send(pending)
                pending, sent_at = [], time.monotonic()
            if not got:
                stop.wait(poll)
        sink.send(pending)
    finally:
        follower.close()
        sink.close()
    typer.echo(sink.summary())


# -- reading ---------------------------------------------------------------------------


def _get(server: str, path: str, params: dict[str, str | int | None]) -> dict[str, object]:
    import httpx

    from opsloop.errors import InvalidInput, NotFound

    url = server.rstrip("/") + path
    try:
        r = httpx.get(url, params={k: v for k, v in params.items() if v is not None}, timeout=60)
    except httpx.TransportError as exc:
        raise InvalidInput(f"cannot reach {server}: {exc}") from exc
    if r.status_code == 404:
        raise NotFound(r.json().get("message", r.text))
    if r.status_code != 200:
        raise InvalidInput(f"{server} answered {r.status_code}: {r.text[:500]}")
    out: dict[str, object] = r.json()
    return out


@app.command("templates")
def templates(
    source: Annotated[str, typer.Argument(help="The log source.")],
    order: Annotated[str, typer.Option(help="id, count, first_seen or last_seen.")] = "count",
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    server: ServerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """A source's templates with their line counts and when they were first seen."""
    import orjson

    if server:
        items = _get(server, f"/api/v1/logs/{source}/templates", {"order": order, "limit": limit})
        rows: list[dict[str, object]] = items["items"]  # type: ignore[assignment]
    else:
        from opsloop.aiops.logs.queries import list_templates
        from opsloop.store import default_store

        rows = [
            t.to_dict()
            for t in list_templates(default_store().db, source, order=order, limit=limit)
        ]
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    import datetime as dt

    for row in rows:
        first = dt.datetime.fromtimestamp(int(str(row["first_time"])) / 1000, dt.UTC)
        typer.echo(
            f"{row['count']:>10}  {row['template_id']:>6}  {first:%Y-%m-%d %H:%M}  {row['template']}"
        )
    typer.echo(f"{len(rows)} templates (count, id, first seen in UTC, template)")


@app.command("anomalies")
def anomalies(
    source: Annotated[
        str | None, typer.Option("--source", "-s", help="Only this source's.")
    ] = None,
    detector: Annotated[str | None, typer.Option(help="new_template, rate or sequence.")] = None,
    since: Annotated[int | None, typer.Option(help="From this time (ms since the epoch).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    server: ServerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """The log anomalies found (``log.anomaly`` events), oldest first."""
    import datetime as dt

    import orjson

    if server:
        out = _get(
            server,
            "/api/v1/logs/anomalies",
            {"source": source, "detector": detector, "since": since, "limit": limit},
        )
        rows: list[dict[str, object]] = out["items"]  # type: ignore[assignment]
    else:
        from opsloop.store import default_store
        from opsloop.store.events import list_events

        rows = [
            e.to_dict()
            for e in list_events(
                default_store().db,
                kind="log.anomaly",
                subject=source,
                source=f"logs:{detector}" if detector else None,
                since_ms=since,
                limit=limit,
            )
        ]
    for row in rows:
        if as_json:
            typer.echo(orjson.dumps(row).decode())
            continue
        when = dt.datetime.fromtimestamp(int(row["time"]) / 1000, dt.UTC)  # type: ignore[call-overload]
        payload: dict[str, object] = row["payload"]  # type: ignore[assignment]
        typer.echo(f"{when:%Y-%m-%d %H:%M:%S}  {payload.get('detector')!s:<12}  {row['message']}")
    if not as_json:
        typer.echo(f"{len(rows)} anomalies")
