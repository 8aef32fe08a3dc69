"""Adaptive batching: concurrent requests to one model become one ``predict`` call.

One batcher per model version. Requests wait in a bounded FIFO; one task takes them in
batches and runs ``predict`` on a thread of its own, so the event loop keeps reading and
decoding requests meanwhile - which is where the next batch comes from: the busier the
server, the bigger the batches, with no timer involved. The rules:

* a batch holds at most ``max_batch_size`` rows (a single bigger request runs alone) and
  only requests whose rows can be concatenated (same columns and dtypes);
* with one request waiting and nothing running, it runs at once - no wait at low load;
* when the queue held several requests (the server is busy) and the batch is not full,
  the batcher waits up to ``max_batch_wait_ms`` for more to join it - but only until it
  has as many requests as the previous batch had: under steady load (a fixed set of
  clients) that many arrive per round, and waiting for more only adds latency;
* past ``max_queue`` waiting requests, :meth:`Batcher.submit` raises :class:`QueueFull`
  (a 503 with ``Retry-After``) instead of letting the queue grow without limit;
* if ``predict`` raises on a batch of several requests, each of them is predicted
  again on its own: only a request that fails alone gets :class:`PredictError` (a 500
  with the message, counted once per request), the others their answer; the batcher
  goes on with the next batch.

Example::

    batcher = Batcher(model, max_batch_size=64, max_batch_wait_ms=2)
    outputs = await batcher.submit(rows)     # this request's rows only, in order
    await batcher.close()                    # finishes every batch already queued
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from dataclasses import dataclass

from opsloop.errors import Unavailable
from opsloop.serving.codec import Outputs, PredictError, Rows, concat, model_input, outputs_of
from opsloop.serving.metrics import ModelMetrics
from opsloop.serving.model import ServedModel

log = logging.getLogger("opsloop.serving")


# A request alone in the queue is predicted on the event loop's thread when predict
# calls take less than this on average (seconds); slower models always go to the
# predict thread, so that the loop stays free for health checks and new requests.
INLINE_PREDICT_S = 0.005


class QueueFull(Unavailable):
    """The model's queue is full: the caller should retry after ``retry_after`` seconds."""

    retry_after = 1


@dataclass(slots=True)
class _Item:
    rows: Rows
    future: asyncio.Future[Outputs]


class Batcher:
    """Batches requests for one model; see the module docstring for the rules."""

    def __init__(
        self,
        model: ServedModel,
        *,
        max_batch_size: int = 64,
        max_batch_wait_ms: float = 2.0,
        max_queue: int = 1024,
        metrics: ModelMetrics | None = None,
        fault_delay_ms: float = 0.0,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_batch_wait_ms < 0 or fault_delay_ms < 0:
            raise ValueError(
                "max_batch_size and max_queue must be >= 1, the wait and the delay >= 0"
            )
        # A drill (the ``fault_delay_ms`` setting): every predict call sleeps this long.
        self.fault_delay = fault_delay_ms / 1000.0
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait = max_batch_wait_ms / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Requests in the last batch: under steady load about as many arrive per batch,
        # so a batch that has them runs without waiting out max_batch_wait_ms.
        self._last_batch = max_batch_size
        # A running mean of predict calls' time: a model this quick predicts a request
        # that is alone on the loop's thread (see _predict). Unknown at first: not quick.
        self._predict_s = INLINE_PREDICT_S
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"predict-{model.name}"
        )

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._queue)

    def start(self) -> None:
        """Start the batching task on the running loop (done by the first submit, too).

        An app driven by one event loop after another (tests calling ``asyncio.run``
        per request) gets a new task on each: a loop's task dies with its loop.
        """
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.get_loop() is not loop:
            self._queue.clear()  # futures of a loop that is gone
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="batcher")

    def submit(self, rows: Rows) -> asyncio.Future[Outputs]:
        """Queue ``rows``; the future gets this request's outputs (or PredictError)."""
        if self._closing:
            raise Unavailable("The server is shutting down; send the request to another one.")
        if len(self._queue) >= self.max_queue:
            if self.metrics is not None:
                self.metrics.error("queue_full")
            raise QueueFull(
                f"Model {self.model.name!r} has {len(self._queue)} requests waiting (the limit, "
                "--max-queue); retry shortly."
            )
        self.start()
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(rows, future))
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))
        self._wake.set()
        return future

    async def close(self) -> None:
        """Finish every queued request, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._pool.shutdown(wait=True)

    # -- the batching task -----------------------------------------------------------

    def _take(self, items: list[_Item], rows: int) -> int:
        """Move queued items into ``items`` while they fit; returns the new row count."""
        queue = self._queue
        key = items[0].rows.key if items else None
        while queue:
            head = queue[0]
            if head.future.done():  # the caller went away
                queue.popleft()
                continue
            if key is None:
                key = head.rows.key
            elif head.rows.key != key or rows + head.rows.n > self.max_batch_size:
                break
            queue.popleft()
            items.append(head)
            rows += head.rows.n
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(queue))
        return rows

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            items: list[_Item] = []
            rows = self._take(items, 0)
            if not items:
                continue
            expected = min(self._last_batch, self.max_batch_size)
            if self.max_wait > 0 and 1 < len(items) < expected and rows < self.max_batch_size:
                # Busy: more requests are on their way; give them a moment to join.
                deadline = loop.time() + self.max_wait
                while rows < self.max_batch_size and len(items) < expected and not self._closing:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), remaining)
                    except TimeoutError:
                        break
                    before = len(items)
                    rows = self._take(items, rows)
                    if len(items) == before and self._queue:
                        break  # the next request does not fit this batch
            self._last_batch = len(items)
            await self._predict(loop, items, rows)

    async def _predict(
        self, loop: asyncio.AbstractEventLoop, items: list[_Item], rows: int, *, retry: bool = False
    ) -> None:
        if self.metrics is not None and not retry:
            self.metrics.batch_size.observe(rows)
        try:
            batch = concat([item.rows for item in items])
            if len(items) == 1 and not self._queue and self._predict_s < INLINE_PREDICT_S:
                # One request, nothing waiting, a quick model: predict on the loop's
                # thread; the two hops to the predict thread and back would cost more
                # than the predict (measured: ~0.3 ms at one connection).
                outputs = self._call(batch)
            else:
                outputs = await loop.run_in_executor(self._pool, self._call, batch)
        except Exception as exc:
            error = exc if isinstance(exc, PredictError) else PredictError(_describe(exc))
            if len(items) > 1:
                # One request's rows may be what the model chokes on: each request again
                # on its own, so only those that fail alone get the error.
                log.info(
                    "predict failed for a batch of %d requests of %s (%s); each on its own",
                    len(items),
                    self.model.name,
                    error,
                )
                for item in items:
                    await self._predict(loop, [item], item.rows.n, retry=True)
                return
            log.warning(
                "predict failed for a batch of %d rows of %s: %s", rows, self.model.name, error
            )
            if self.metrics is not None:
                self.metrics.error("predict", len(items))
            for item in items:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        start = 0
        for item in items:
            stop = start + item.rows.n
            if not item.future.done():
                item.future.set_result(outputs if len(items) == 1 else outputs.slice(start, stop))
            start = stop

    def _call(self, batch: Rows) -> Outputs:
        """On the predict thread: build the model's input, predict, check the output."""
        model = self.model
        started = time.perf_counter()
        if self.fault_delay:
            time.sleep(self.fault_delay)
        try:
            raw = model.predict(model_input(batch, model.inputs))
        except Exception as exc:
            raise PredictError(_describe(exc)) from exc
        finally:
            took = time.perf_counter() - started
            self._predict_s += 0.1 * (took - self._predict_s)
        return outputs_of(raw, batch.n, model.outputs)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"The model failed to predict: {type(exc).__name__}" + (f": {text}" if text else "")


__all__ = ["Batcher", "QueueFull"]
