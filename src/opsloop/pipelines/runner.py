"""Running a pipeline: build, check, then schedule steps as their inputs become ready.

Everything that can be refused is refused before anything runs or is recorded: the
graph (missing inputs, cycles), every argument (it must be hashable for the cache key
and storable for the worker), every step's code (it must be picklable for a worker
process). Then the pipeline's run is created and the steps are scheduled.

The scheduler is one loop in the calling thread. Each turn it takes the attempts that
ended, works out which steps became ready, computes their cache keys (their inputs'
content hashes are now known), looks them all up in one query, records hits, and starts
as many misses as the executor has room for. What changed is buffered and written in one
transaction every 50 ms (``FLUSH_INTERVAL``), on a writer thread, so that neither a
transaction a turn nor a slow disk holds up the steps. A retry waits for its backoff
in the loop, never in a worker. Steps whose inputs can no longer come (an upstream step
failed) are not run and get no run record: they are SKIPPED in the result and in the
pipeline run's summary artifact ``pipeline/steps.json``; the other branches go on, so
that a re-run can resume from as much cache as possible.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import heapq
import os
import queue
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from opsloop.core.ids import new_run_id, now_ms
from opsloop.errors import InvalidInput, NotFound
from opsloop.pipelines import cache as cache_index
from opsloop.pipelines.executors import Executor, resolve
from opsloop.pipelines.fingerprint import CodeHasher, Unhashable, canonical
from opsloop.pipelines.graph import Graph, Node, Output
from opsloop.pipelines.records import (
    Batch,
    NewRun,
    Recorder,
    RunEnd,
    check_param_keys,
    clip,
)
from opsloop.pipelines.result import (
    FAILED,
    FINISHED,
    KILLED,
    SKIPPED,
    PipelineFailed,
    PipelineResult,
    StepResult,
)
from opsloop.pipelines.values import EXTENSIONS, dump_value, dumps_code, load_value
from opsloop.pipelines.worker import (
    ERROR,
    LOST,
    OK,
    TIMEOUT,
    BlobRef,
    Outcome,
    Slot,
    StoredOutput,
    Task,
)
from opsloop.store import Store, default_store
from opsloop.store.tables import MAX_PARAM_VALUE_LENGTH
from opsloop.tracking.service import TrackingService, artifact_path_of

PENDING = "PENDING"
RUNNING = "RUNNING"

TAG_PIPELINE = "opsloop.pipeline"
TAG_STEP = "opsloop.step"
TAG_FUNCTION = "opsloop.function"
TAG_CODE = "opsloop.code_hash"
TAG_UPSTREAM = "opsloop.upstream"
TAG_CACHE = "opsloop.cache"  # hit | miss | off
TAG_CACHE_KEY = "opsloop.cache.key"
TAG_CACHE_SOURCE = "opsloop.cache.source_run"
TAG_ATTEMPTS = "opsloop.attempts"
TAG_DURATION = "opsloop.duration"
TAG_ERROR = "opsloop.error"
TAG_OUTPUT = "opsloop.output."  # + output name: the output's SHA-256
SUMMARY_ARTIFACT = "pipeline/steps.json"

_EMPTY_SHA = hashlib.sha256(b"").hexdigest()

# Step records are written at least this often (seconds) while steps run.
FLUSH_INTERVAL = 0.05


# -- preparing --------------------------------------------------------------------------


@dataclass
class _Prepared:
    """What a node needs at run time, computed (and checked) before anything runs."""

    node: Node
    function: str
    code_hash: str
    by_value: tuple[str, ...]
    fn_key: str
    fn_bytes: bytes
    params: dict[str, Any]  # canonical, for the cache key
    param_text: dict[str, str]  # as logged
    templates: dict[str, Any]  # every argument, inputs replaced by Slot markers
    input_templates: dict[str, Any]  # the arguments that hold inputs
    kinds: dict[str, int]


def _template(value: Any, counter: list[int]) -> Any:
    # Same traversal order as graph.refs_in, so Slot(i) is the i-th input of the node.
    if isinstance(value, Output):
        counter[0] += 1
        return Slot(counter[0] - 1)
    if isinstance(value, list):
        return [_template(v, counter) for v in value]
    if isinstance(value, tuple):
        items = [_template(v, counter) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {k: _template(v, counter) for k, v in value.items()}
    return value


def _param_text(value: Any, canon: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(canon, dict) and "$blob" in canon:
        kind, sha = canon["$blob"]
        text = f"<{kind.rpartition(':')[2]} sha256:{sha[:12]}>"
    else:
        try:
            text = str(value)
        except Exception:
            text = f"<{type(value).__name__}>"
    return clip(text, MAX_PARAM_VALUE_LENGTH)


def _dump_for_hash(value: Any) -> bytes:
    return dump_value(value)[0]


def _unstorable(step: str, arg: str, value: Any, exc: BaseException) -> InvalidInput:
    return InvalidInput(
        f"step {step!r}: argument {arg!r} ({type(value).__name__}) cannot be stored: {exc}. "
        "Pass a value that can be pickled (for a file or a connection, its path or URL) or "
        "create it inside the step"
    )


# The key under which a step's checks count in its cache key, beside its params: no
# param can have it ('$' is not allowed in param names).
CHECKS_KEY = "$checks"


def _prepare_checks(name: str, node: Node, hasher: CodeHasher, params: dict[str, Any]) -> None:
    """Check that every checked argument is passed; make the checks part of the key."""
    checks = node.step.checks
    for arg, _ in checks.inputs:
        if arg in node.arguments and node.kinds[arg] not in (2, 4):
            continue
        extra = [v for a, v in node.arguments.items() if node.kinds[a] == 4]
        if not any(isinstance(v, dict) and arg in v for v in extra):
            raise InvalidInput(
                f"step {name!r} has checks on the argument {arg!r}, but this call of it "
                "does not pass that argument"
            )
    try:
        params[CHECKS_KEY] = canonical(checks.fingerprint(hasher.hash), dump=_dump_for_hash)
    except (Unhashable, RecursionError) as exc:
        raise InvalidInput(f"step {name!r}: its checks cannot be hashed: {exc}") from None


def _prepare(graph: Graph, order: list[str], in_process: bool) -> dict[str, _Prepared]:
    hasher = CodeHasher()
    pickled: dict[int, tuple[str, bytes]] = {}
    out: dict[str, _Prepared] = {}
    for name in order:
        node = graph.nodes[name]
        step = node.step
        fn = step.fn
        code_hash = hasher.hash(fn)
        checks = step.checks
        by_value = tuple(
            sorted(hasher.modules(fn).union(*(hasher.modules(f) for f in checks.functions())))
        )
        input_args = node.input_arguments()
        params: dict[str, Any] = {}
        text: dict[str, str] = {}
        for arg, value in node.arguments.items():
            if arg in input_args:
                continue
            items = (
                list(value.items())
                if node.kinds[arg] == 4 and isinstance(value, dict)  # **kwargs: one param each
                else [(arg, value)]
            )
            for key, item in items:
                try:
                    canon = canonical(item, dump=_dump_for_hash)
                except (Unhashable, RecursionError) as exc:
                    raise _unstorable(name, key, item, exc) from None
                params[key] = canon
                text[key] = _param_text(item, canon)
        check_param_keys(name, list(params))
        if checks:
            _prepare_checks(name, node, hasher, params)
        counter = [0]
        templates = {arg: _template(value, counter) for arg, value in node.arguments.items()}
        input_templates = {arg: templates[arg] for arg in input_args}
        try:  # the plain values beside inputs (``[df, 3]``) must be storable too
            cache_index.step_key(
                code_hash, params, input_templates, ["0" * 64] * counter[0], step.output_names
            )
        except (Unhashable, RecursionError) as exc:
            arg = sorted(input_args)[0] if input_args else "?"
            raise _unstorable(name, arg, node.arguments.get(arg), exc) from None
        fn_key, fn_bytes = "", b""
        if not in_process:
            memo = pickled.get(id(fn))
            if memo is None:
                try:
                    data = dumps_code(fn, by_value)
                    dumps_code(templates, by_value)
                except Exception as exc:
                    raise InvalidInput(
                        f"step {name!r} cannot be sent to a worker process: {exc}. Its code, "
                        "or something it refers to, cannot be pickled: create such objects "
                        "inside the step, or run with executor='inline'"
                    ) from None
                memo = pickled[id(fn)] = (hashlib.sha256(data).hexdigest(), data)
            fn_key, fn_bytes = memo
            if checks:
                try:
                    dumps_code(checks, by_value)
                except Exception as exc:
                    raise InvalidInput(
                        f"step {name!r}: its checks cannot be sent to a worker process: "
                        f"{exc}. A custom check's function must be picklable (a module-level "
                        "function or a lambda), or run with executor='inline'"
                    ) from None
        module = getattr(fn, "__module__", None) or "?"
        qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "?")
        out[name] = _Prepared(
            node,
            f"{module}.{qualname}",
            code_hash,
            by_value,
            fn_key,
            fn_bytes,
            params,
            text,
            templates,
            input_templates,
            {arg: int(kind) for arg, kind in node.kinds.items()},
        )
    return out


# -- running ----------------------------------------------------------------------------


@dataclass
class _State:
    status: str = PENDING
    waiting: int = 0
    run_id: str | None = None
    key: str | None = None
    attempts: int = 0
    lost: int = 0
    cache_hit: bool = False
    cache_source: str | None = None
    outputs: tuple[StoredOutput, ...] = ()
    values: tuple[Any, ...] | None = None
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    duration: float = 0.0


def _logs(parts: list[str]) -> str:
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return "".join(f"--- attempt {i} ---\n{text}" for i, text in enumerate(parts, 1))


class _Runner:
    def __init__(
        self,
        graph: Graph,
        order: list[str],
        prepared: dict[str, _Prepared],
        store: Store,
        executor: Executor,
        recorder: Recorder,
        *,
        read_cache: bool,
        progress: Callable[[str, str], None] | None = None,
    ) -> None:
        self.graph = graph
        self.progress = progress
        self.order = order
        self.prepared = prepared
        self.store = store
        self.executor = executor
        self.recorder = recorder
        self.read_cache = read_cache
        self.downstream = graph.downstream()
        url = store.settings.artifacts_url
        # Workers get the store's location explicitly, never relative to their cwd.
        self.artifacts_url = url if "://" in url else os.path.abspath(url)
        self.database_url = _absolute_db_url(store.settings.database_url)
        self.states = {name: _State(waiting=len(graph.nodes[name].upstream)) for name in order}
        self.ready: deque[str] = deque(n for n in order if self.states[n].waiting == 0)
        self.queued: deque[str] = deque()
        self.retries: list[tuple[float, int, str]] = []
        self.due: deque[str] = deque()
        self.running: set[str] = set()
        self.done: queue.SimpleQueue[tuple[str, Outcome]] = queue.SimpleQueue()
        self.terminal = 0
        # What changed and is not yet written: written every FLUSH_INTERVAL, when
        # nothing runs, before an in-process step, and with the pipeline's end.
        self.buffer = Batch()
        self.buffered_since: float | None = None
        self._raw: Any = None
        self._writer: ThreadPoolExecutor | None = None
        self._writes: deque[Future[None]] = deque()
        self._seq = 0
        self._empty_logged = False

    # -- the loop ---------------------------------------------------------------------

    def _notify(self, name: str, status: str) -> None:
        """Tell the caller's progress display that a step changed state."""
        if self.progress is not None:
            self.progress(name, status)

    def loop(self) -> None:
        # Cache lookups, one a turn, on one connection held for the run.
        with self.store.db.reader() as raw:
            self._raw = raw
            try:
                self._loop()
            finally:
                self._raw = None
                self.close_writer()  # waits for the writes under way

    def _loop(self) -> None:
        total = len(self.order)
        arrived: list[tuple[str, Outcome]] = []
        while True:
            batch = self.buffer
            for name, outcome in arrived:
                self._on_outcome(name, outcome, batch)
            arrived = []
            now = time.monotonic()
            while self.retries and self.retries[0][0] <= now:
                self.due.append(heapq.heappop(self.retries)[2])
            if self.ready or self.due or self.queued:
                self._turn(batch)
            if self.terminal >= total and not self.running:
                return  # the buffer is written with the pipeline's end
            if self.buffer:
                if self.buffered_since is None:
                    self.buffered_since = now
                if not self.running or now - self.buffered_since >= FLUSH_INTERVAL:
                    self.flush()
            timeout = None
            if self.retries:
                timeout = max(0.0, self.retries[0][0] - time.monotonic())
            if not self.running:
                if timeout is None:
                    if self.due or self.queued or self.ready:
                        continue
                    raise RuntimeError(
                        f"pipeline {self.graph.name!r} stalled with steps left "
                        f"({[n for n, s in self.states.items() if s.status == PENDING]})"
                    )
                time.sleep(timeout)
                continue
            if self.buffered_since is not None:
                due = max(0.0, self.buffered_since + FLUSH_INTERVAL - time.monotonic())
                timeout = due if timeout is None else min(timeout, due)
            try:
                arrived.append(self.done.get(timeout=timeout))
            except queue.Empty:
                continue
            while True:  # take every attempt that has ended meanwhile, to batch their writes
                try:
                    arrived.append(self.done.get_nowait())
                except queue.Empty:
                    break

    def flush(self, *, wait: bool = False) -> None:
        """Write what changed since the last write, in one transaction, on the writer
        thread (``wait``: and return once it and every earlier write are stored).

        The scheduler goes on while the database commits (SQLite releases the GIL while
        it writes and syncs, a PostgreSQL server works while the client waits), so a
        slow disk or network delays the records, not the steps. Writes keep their order
        (one thread); a write that fails fails the pipeline at the next flush.
        """
        batch, self.buffer = self.buffer, Batch()
        self.buffered_since = None
        if batch:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="opsloop-records")
            self._writes.append(self._writer.submit(self.recorder.write, batch))
        while self._writes and (wait or self._writes[0].done()):
            self._writes.popleft().result()  # raises what the write raised

    def take_buffer(self) -> Batch:
        """What is not yet written, once every earlier write is stored (for the
        pipeline's last transaction)."""
        try:
            while self._writes:
                self._writes.popleft().result()
        finally:
            self._writes.clear()
        batch, self.buffer = self.buffer, Batch()
        self.buffered_since = None
        return batch

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _turn(self, batch: Batch) -> None:
        """Look up the ready steps in the cache and start what there is room for.

        What this changes is recorded in ``batch`` (the buffer), which is written in
        one transaction every FLUSH_INTERVAL rather than each turn: on a chain of tiny
        steps a transaction a turn (begin, a few statements, commit: ~0.6 ms on SQLite,
        more on PostgreSQL over the network) was most of the overhead. Workers never
        touch the database, so an attempt may start before its run's row is written;
        were this process to die in between, the attempt's blobs stay unreferenced.
        A step that runs in this process (inline) starts only once its run is written,
        so that what it does with the store can refer to it.
        """
        if self.ready:
            self._resolve_ready(batch)
        tasks = self._dispatch(batch)
        if self.executor.in_process and tasks:
            self.flush(wait=True)
        for task in tasks:
            self._submit(task)

    def _submit(self, task: Task) -> None:
        name = task.step
        self.running.add(name)
        try:
            fut = self.executor.submit(task)
        except Exception as exc:  # e.g. the task cannot be pickled: a failed attempt
            self.done.put(
                (
                    name,
                    Outcome(
                        "error",
                        error=f"cannot start the step: {type(exc).__name__}: {exc}",
                        traceback="".join(traceback.format_exception(exc)),
                    ),
                )
            )
            return
        fut.add_done_callback(functools.partial(self._arrive, name))

    def _arrive(self, name: str, fut: Future[Outcome]) -> None:
        self.done.put((name, _result(fut)))

    # -- cache and dispatch --------------------------------------------------------------

    def _key(self, name: str) -> str:
        p = self.prepared[name]
        shas = [self.states[up].outputs[i].sha256 for up, i in p.node.inputs]
        return cache_index.step_key(
            p.code_hash, p.params, p.input_templates, shas, p.node.step.output_names
        )

    def _reads_cache(self, name: str) -> bool:
        return self.read_cache and self.prepared[name].node.step.cache

    def _resolve_ready(self, batch: Batch) -> None:
        while self.ready:
            names = list(self.ready)
            self.ready.clear()
            for n in names:
                self.states[n].key = self._key(n)
            wanted = [self.states[n].key or "" for n in names if self._reads_cache(n)]
            hits = cache_index.lookup(self.store, wanted, dbapi=self._raw) if wanted else {}
            for n in names:
                entry = hits.get(self.states[n].key or "") if self._reads_cache(n) else None
                if entry is not None:
                    self._hit(n, entry, batch)  # may make more steps ready
                else:
                    self.queued.append(n)

    def _base_tags(self, name: str) -> dict[str, str]:
        p = self.prepared[name]
        tags = {
            TAG_PIPELINE: self.graph.name,
            TAG_STEP: name,
            TAG_FUNCTION: p.function,
            TAG_CODE: p.code_hash,
            TAG_CACHE_KEY: self.states[name].key or "",
        }
        if p.node.upstream:
            tags[TAG_UPSTREAM] = ", ".join(p.node.upstream)
        return tags

    def _output_rows(
        self, run_id: str, outputs: tuple[StoredOutput, ...], batch: Batch
    ) -> dict[str, str]:
        root = self.recorder.run_artifacts(run_id)
        tags = {}
        for o in outputs:
            batch.artifacts.append(
                (f"{root}/outputs/{o.name}.{EXTENSIONS[o.format]}", o.sha256, o.size)
            )
            tags[TAG_OUTPUT + o.name] = o.sha256
        return tags

    def _hit(self, name: str, entry: cache_index.Entry, batch: Batch) -> None:
        st = self.states[name]
        st.status = FINISHED
        st.cache_hit = True
        self._notify(name, "cached")
        st.cache_source = entry.run_id
        st.outputs = entry.outputs
        st.run_id = new_run_id()
        now = now_ms()
        tags = self._base_tags(name)
        tags[TAG_CACHE] = "hit"
        tags[TAG_CACHE_SOURCE] = entry.run_id
        tags.update(self._output_rows(st.run_id, entry.outputs, batch))
        batch.new_runs.append(
            NewRun(st.run_id, name, FINISHED, now, now, tags, self.prepared[name].param_text)
        )
        if entry.run_id:
            batch.copies.append((st.run_id, entry.run_id))
        self._terminal(name)
        self._release(name)

    def _dispatch(self, batch: Batch) -> list[Task]:
        tasks: list[Task] = []
        room = self.executor.capacity - len(self.running)
        while room > 0 and (self.due or self.queued):
            name = self.due.popleft() if self.due else self.queued.popleft()
            st = self.states[name]
            if st.run_id is None:
                st.run_id = new_run_id()
                st.status = RUNNING
                self._notify(name, RUNNING)
                tags = self._base_tags(name)
                tags[TAG_CACHE] = "miss" if self._reads_cache(name) else "off"
                batch.new_runs.append(
                    NewRun(
                        st.run_id,
                        name,
                        RUNNING,
                        now_ms(),
                        None,
                        tags,
                        self.prepared[name].param_text,
                    )
                )
            tasks.append(self._task(name))
            room -= 1
        return tasks

    def _task(self, name: str) -> Task:
        p = self.prepared[name]
        st = self.states[name]
        step = p.node.step
        refs = tuple(
            BlobRef(o.sha256, o.size, o.format)
            for o in (self.states[up].outputs[i] for up, i in p.node.inputs)
        )
        in_process = self.executor.in_process
        return Task(
            step=name,
            run_id=st.run_id or "",
            attempt=st.attempts + 1,
            fn_key=p.fn_key,
            fn_bytes=p.fn_bytes,
            arguments=p.templates,
            kinds=p.kinds,
            inputs=refs,
            output_names=step.output_names,
            multi=step.multi,
            named=step.named_outputs,
            artifacts_url=self.artifacts_url,
            database_url=self.database_url,
            timeout=step.timeout,
            by_value=p.by_value,
            # The cache entry is written by the runner's writer thread, off the step's
            # path (a worker would write it before answering: ~0.1 ms a step).
            cache_key=None,
            checks=step.checks or None,
            fn=step.fn if in_process else None,
            values=[self._live(up, i) for up, i in p.node.inputs] if in_process else None,
            store=self.store if in_process else None,
        )

    def _live(self, name: str, index: int) -> Any:
        st = self.states[name]
        if st.values is None:
            st.values = tuple(
                load_value(self.store.blobs.get_bytes(o.sha256), o.format) for o in st.outputs
            )
        return st.values[index]

    # -- outcomes -----------------------------------------------------------------------

    def _on_outcome(self, name: str, outcome: Outcome, batch: Batch) -> None:
        self.running.discard(name)
        st = self.states[name]
        step = self.prepared[name].node.step
        st.duration += outcome.duration
        if outcome.status == OK and outcome.logged is not None:
            _refuse_param_changes(name, self.prepared[name].param_text, outcome)
        stderr = outcome.stderr
        if outcome.traceback and outcome.traceback not in stderr:
            stderr += outcome.traceback
        elif outcome.status in (TIMEOUT, LOST) and outcome.error:
            stderr += outcome.error + "\n"
        if outcome.status == LOST and st.lost == 0:
            # The process died under it, maybe for another step's fault: once more, free.
            st.lost += 1
            st.stdout.append(outcome.stdout)
            st.stderr.append(stderr)
            self.due.append(name)
            return
        st.attempts += 1
        st.stdout.append(outcome.stdout)
        st.stderr.append(stderr)
        if outcome.status == OK:
            st.status = FINISHED
            self._notify(name, FINISHED)
            st.outputs = outcome.outputs
            st.values = outcome.values
            self._finish(name, batch, outcome.cache_entry, outcome)
            self._terminal(name)
            self._release(name)
        elif outcome.retry and st.attempts <= step.retries:  # failed checks: not again
            delay = step.retry_backoff * 2 ** (st.attempts - 1)
            self._seq += 1
            heapq.heappush(self.retries, (time.monotonic() + delay, self._seq, name))
        else:
            st.status = FAILED
            st.error = outcome.error or "the step failed"
            self._notify(name, FAILED)
            st.traceback = outcome.traceback or (outcome.error or "") + "\n"
            self._fail(name, batch, outcome=outcome)
            self._terminal(name)
            self._skip_downstream(name)

    def _blob(self, data: bytes) -> tuple[str, int]:
        if not data:
            if not self._empty_logged:
                self.store.blobs.put_bytes(b"")
                self._empty_logged = True
            return _EMPTY_SHA, 0
        return self.store.blobs.put_bytes(data)

    def _log_rows(self, st: _State, batch: Batch) -> None:
        root = self.recorder.run_artifacts(st.run_id or "")
        for fname, parts in (("stdout.txt", st.stdout), ("stderr.txt", st.stderr)):
            sha, size = self._blob(_logs(parts).encode("utf-8", "replace"))
            batch.artifacts.append((f"{root}/logs/{fname}", sha, size))

    def _end_tags(self, name: str) -> dict[str, str]:
        st = self.states[name]
        return {TAG_ATTEMPTS: str(st.attempts), TAG_DURATION: f"{st.duration:.6f}"}

    def _finish(
        self,
        name: str,
        batch: Batch,
        entry: tuple[str, int] | None,
        outcome: Outcome | None = None,
    ) -> None:
        st = self.states[name]
        step = self.prepared[name].node.step
        run_id = st.run_id or ""
        tags = self._end_tags(name)
        tags.update(self._output_rows(run_id, st.outputs, batch))
        self._log_rows(st, batch)
        if outcome is not None:
            _attempt_rows(self.recorder.run_artifacts(run_id), run_id, outcome, batch)
        if step.cache and st.key:
            # The worker stored the entry after every output; it becomes visible in the
            # same transaction as the outputs' paths, never before them.
            if entry is not None:
                batch.artifacts.append((cache_index.entry_path(st.key), *entry))
            else:  # stored by the writer thread just before the transaction
                batch.blobs.append(
                    (
                        cache_index.entry_path(st.key),
                        cache_index.encode(st.key, run_id, name, st.outputs, now_ms()),
                    )
                )
        batch.ends.append(RunEnd(run_id, FINISHED, now_ms(), tags))

    def _fail(
        self, name: str, batch: Batch, status: str = FAILED, outcome: Outcome | None = None
    ) -> None:
        st = self.states[name]
        run_id = st.run_id or ""
        tags = self._end_tags(name)
        tags[TAG_ERROR] = st.error or ""
        self._log_rows(st, batch)
        if outcome is not None:
            _attempt_rows(self.recorder.run_artifacts(run_id), run_id, outcome, batch)
        sha, size = self._blob((st.traceback or "").encode("utf-8", "replace"))
        batch.artifacts.append(
            (f"{self.recorder.run_artifacts(run_id)}/logs/traceback.txt", sha, size)
        )
        batch.ends.append(RunEnd(run_id, status, now_ms(), tags))

    def _terminal(self, name: str) -> None:
        self.terminal += 1

    def _release(self, name: str) -> None:
        for down in self.downstream[name]:
            st = self.states[down]
            st.waiting -= 1
            if st.waiting == 0 and st.status == PENDING:
                self.ready.append(down)

    def _skip_downstream(self, name: str) -> None:
        stack = list(self.downstream[name])
        while stack:
            down = stack.pop()
            st = self.states[down]
            if st.status == PENDING:
                st.status = SKIPPED
                self._notify(down, SKIPPED)
                self._terminal(down)
                stack.extend(self.downstream[down])

    # -- interruption ---------------------------------------------------------------------

    def interrupt(self, exc: BaseException) -> Batch:
        """Record the steps that were running as KILLED (Ctrl-C) or FAILED (an error
        of the runner itself); the rest is left as it was."""
        killed = isinstance(exc, KeyboardInterrupt)
        if killed:
            self.executor.abort()
        status = KILLED if killed else FAILED
        # What is not yet written is written with the ends of the interrupted steps.
        batch = self.take_buffer()
        for name in list(self.running) + list(self.due) + [r[2] for r in self.retries]:
            st = self.states[name]
            if st.status != RUNNING:
                continue
            st.status = status
            st.error = f"{type(exc).__name__}: {exc}" if not killed else "interrupted"
            st.traceback = st.error + "\n"
            self._fail(name, batch, status)
        self.running.clear()
        return batch

    # -- reporting ------------------------------------------------------------------------

    def step_results(self) -> dict[str, StepResult]:
        out = {}
        for name in self.order:
            st = self.states[name]
            status = st.status if st.status in (FINISHED, FAILED, KILLED, SKIPPED) else SKIPPED
            out[name] = StepResult(
                name,
                status,
                st.run_id,
                st.cache_hit,
                st.duration,
                st.attempts,
                st.error,
                st.outputs if status == FINISHED else (),
                st.key,
            )
        return out

    def summary(self) -> bytes:
        steps = []
        for name in self.order:
            st = self.states[name]
            p = self.prepared[name]
            steps.append(
                {
                    "name": name,
                    "function": p.function,
                    "status": st.status if st.status != PENDING else SKIPPED,
                    "run_id": st.run_id,
                    "cache_hit": st.cache_hit,
                    "cache_source_run": st.cache_source,
                    "cache_key": st.key,
                    "code_hash": p.code_hash,
                    "attempts": st.attempts,
                    "duration": round(st.duration, 6),
                    "error": st.error,
                    "params": p.param_text,
                    "inputs": [
                        {
                            "step": up,
                            "output": self.prepared[up].node.step.output_names[i],
                            "sha256": (
                                self.states[up].outputs[i].sha256
                                if self.states[up].outputs
                                else None
                            ),
                        }
                        for up, i in p.node.inputs
                    ],
                    "outputs": [
                        {"name": o.name, "sha256": o.sha256, "size": o.size, "format": o.format}
                        for o in st.outputs
                    ],
                }
            )
        # orjson: the standard encoder with an indent is pure Python (25 ms for 200 steps).
        return orjson.dumps(
            {"pipeline": self.graph.name, "steps": steps}, option=orjson.OPT_INDENT_2
        )


def _refuse_param_changes(step: str, params: Mapping[str, str], outcome: Outcome) -> None:
    """Fail (for good) an attempt whose body logged one of the step's own params (its
    arguments) with another value: a run's param cannot change."""
    logged = outcome.logged
    if logged is None:
        return
    for key, value in logged.params.items():
        if key in params and params[key] != value:
            outcome.status = ERROR
            outcome.retry = False
            outcome.error = (
                f"InvalidInput: step {step!r} logged the param {key!r} as {value!r}, but "
                f"{key!r} is an argument of the step, logged as {params[key]!r}; a run's "
                "param cannot change: log it under another name"
            )
            outcome.traceback = outcome.error + "\n"
            return


def _attempt_rows(root: str, run_id: str, outcome: Outcome, batch: Batch) -> None:
    """Record on the step's run what its last attempt produced besides outputs: the
    reports of its checks and what its body logged (metrics, params, tags)."""
    for path, sha, size in outcome.reports:
        batch.artifacts.append((f"{root}/{path}", sha, size))
    logged = outcome.logged
    if logged is None:
        return
    batch.logged_metrics.extend((run_id, k, val, ts, s) for k, val, ts, s in logged.metrics)
    batch.logged_params.extend((run_id, k, val) for k, val in logged.params.items())
    batch.logged_tags.extend((run_id, k, val) for k, val in logged.tags.items())
    batch.dataset_inputs.extend((run_id, name, version) for name, version in logged.inputs)


def _absolute_db_url(url: str) -> str:
    """``url`` with a relative SQLite file made absolute (workers may start elsewhere)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return url
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or os.path.isabs(db):
        return url
    return parsed.set(database=os.path.abspath(db)).render_as_string(hide_password=False)


def _result(fut: Future[Outcome]) -> Outcome:
    try:
        return fut.result()
    except BaseException as exc:  # an executor broke its contract: still an outcome
        return Outcome("error", error=f"{type(exc).__name__}: {exc}")


# -- the entry point ------------------------------------------------------------------------


def _graph_of(target: Any, params: Mapping[str, Any] | None) -> tuple[Graph, str | None]:
    from opsloop.pipelines.pipeline import Pipeline

    if isinstance(target, Pipeline):
        graph = target.build(**dict(params or {}))
        return graph, graph.experiment
    if isinstance(target, Graph):
        if params:
            raise InvalidInput(
                "params are for @pipeline functions; a Graph already holds its step arguments"
            )
        return target, target.experiment
    raise InvalidInput(f"cannot run {target!r}: pass a @pipeline function or a Graph")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def run(
    pipeline: Any,
    params: Mapping[str, Any] | None = None,
    *,
    executor: str | Executor = "local",
    max_workers: int | None = None,
    cache: bool = True,
    experiment: str | None = None,
    run_name: str | None = None,
    store: Store | None = None,
    raise_on_failure: bool = True,
    progress: Callable[[str, str], None] | None = None,
) -> PipelineResult:
    """Build, check and run a pipeline; every step becomes a run nested under the
    pipeline's run, in the experiment named after the pipeline (or ``experiment``).

    ``executor``: ``"local"`` (worker processes, ``max_workers`` of them, default one
    per CPU), ``"inline"`` (this thread, for debugging) or an ``Executor``.
    ``cache=False`` runs every step, and still refreshes the cache with what they
    produce (a step's own ``cache=False`` neither reads nor writes it). A failed step
    raises ``PipelineFailed`` (its ``.result`` tells all) unless
    ``raise_on_failure=False``; running the pipeline again resumes from the cache.
    ``progress(step, status)`` is called as each step starts, finishes, is served from
    the cache (status ``"cached"``), fails or is skipped (for a progress display).

    Example::

        result = opsloop.pipelines.run(churn, {"path": "churn.csv"}, max_workers=4)
        model = result.output("train")
    """
    started = time.perf_counter()
    graph, pipeline_experiment = _graph_of(pipeline, params)
    order = graph.validate()
    ex = resolve(executor, max_workers)
    prestart = getattr(ex, "prestart", None)
    if callable(prestart):  # worker processes start while the pipeline is prepared
        prestart()
    if not isinstance(cache, bool):
        raise InvalidInput(f"cache must be True or False, got {cache!r}")
    prepared = _prepare(graph, order, ex.in_process)
    check_param_keys(graph.name, list(graph.params))
    # Nothing was recorded or run until here.
    store = store or default_store()
    svc = TrackingService(store)
    exp_id = svc.get_or_create_experiment(experiment or pipeline_experiment or graph.name)
    exp = svc.get_experiment(exp_id)
    root = artifact_path_of(exp.artifact_location)
    if root is None:
        raise InvalidInput(
            f"experiment {exp.name!r} keeps its artifacts at {exp.artifact_location}, outside "
            "opsloop's store; pipelines need opsloop's artifact store"
        )
    source = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    prun = svc.create_run(
        exp_id,
        user_id=_user(),
        run_name=run_name or graph.name,
        tags={TAG_PIPELINE: graph.name, "opsloop.kind": "pipeline"},
        source=source,
        parent_run_id=_parent_run(svc),
    )
    pipeline_params = [(k, _pipeline_param_text(val)) for k, val in graph.params.items()]
    for i in range(0, len(pipeline_params), 100):
        svc.log_batch(prun.info.run_id, params_=pipeline_params[i : i + 100])
    recorder = Recorder(
        store,
        experiment_id=exp_id,
        artifact_location=exp.artifact_location,
        artifact_root=root,
        parent_run_id=prun.info.run_id,
        user=_user(),
        source=source,
    )
    runner = _Runner(
        graph, order, prepared, store, ex, recorder, read_cache=cache, progress=progress
    )
    try:
        runner.loop()
    except BaseException as exc:
        status = KILLED if isinstance(exc, KeyboardInterrupt) else FAILED
        try:
            batch = runner.interrupt(exc)
            _end_pipeline(runner, recorder, prun.info.run_id, status, batch)
        except Exception:
            pass  # the original error matters more than a failed record of it
        raise
    results = runner.step_results()
    status = FINISHED if all(s.status == FINISHED for s in results.values()) else FAILED
    _end_pipeline(runner, recorder, prun.info.run_id, status, runner.take_buffer())
    live = (
        {n: st.values for n, st in runner.states.items() if st.values is not None}
        if ex.in_process
        else {}
    )
    result = PipelineResult(
        graph.name,
        prun.info.run_id,
        exp_id,
        status,
        results,
        time.perf_counter() - started,
        store,
        live,
    )
    if raise_on_failure and not result.ok:
        raise PipelineFailed(result)
    return result


def _parent_run(svc: TrackingService) -> str | None:
    """The active run of this thread (``with opsloop.start_run():``), if it lives in
    the pipeline's store: the pipeline's run is nested under it, as MLflow nests a run
    (``mlflow.parentRunId``), while keeping its own experiment."""
    from opsloop.tracking.fluent import active_run

    active = active_run()
    if active is None:
        return None
    try:
        svc.get_run(active.info.run_id)
    except NotFound:  # a run of another store (fluent and pipeline stores differ)
        return None
    return active.info.run_id


def _pipeline_param_text(value: Any) -> str:
    # A pipeline's params are only used by its body, here: they are logged, not stored.
    try:
        canon = canonical(value)
    except (Unhashable, RecursionError):
        return f"<{type(value).__name__}>"
    return _param_text(value, canon)


def _end_pipeline(
    runner: _Runner, recorder: Recorder, run_id: str, status: str, batch: Batch
) -> None:
    counts: dict[str, int] = {}
    for st in runner.states.values():
        key = "cached" if st.cache_hit else st.status.lower()
        counts[key] = counts.get(key, 0) + 1
    tags = {f"opsloop.steps.{k}": str(n) for k, n in sorted(counts.items())}
    tags["opsloop.steps"] = str(len(runner.states))
    sha, size = runner.store.blobs.put_bytes(runner.summary())
    batch.artifacts.append((f"{recorder.run_artifacts(run_id)}/{SUMMARY_ARTIFACT}", sha, size))
    batch.ends.append(RunEnd(run_id, status, now_ms(), tags))
    recorder.write(batch)
