"""Adaptive batching with a real model loaded from an MLmodel folder, on a real event loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from opsloop.registry import flavors
from opsloop.serving import codec
from opsloop.serving.batcher import Batcher, QueueFull
from opsloop.serving.metrics import ServingMetrics
from opsloop.serving.model import ServedModel, load


def _model() -> Any:
    """Answers ``y = 10 * x`` and, per row, how many rows its predict call had."""

    def predict(df: pd.DataFrame) -> pd.DataFrame:
        time.sleep(float(df["wait"].max()))
        if (df["x"] < 0).any():
            raise ValueError("x must not be negative")
        return pd.DataFrame({"y": df["x"] * 10, "n": [len(df)] * len(df)})

    return predict


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    path = tmp_path_factory.mktemp("batcher") / "tens"
    flavors.save_model(_model(), path, input_example=pd.DataFrame({"x": [1.0], "wait": [0.0]}))
    return load(path)


def rows(model: ServedModel, *xs: float, wait: float = 0.0) -> codec.Rows:
    body = orjson.dumps({"inputs": {"x": list(xs), "wait": [wait] * len(xs)}})
    return codec.decode_invocations(body, "application/json", model.inputs)


def answer(out: codec.Outputs) -> list[tuple[float, int]]:
    cols = dict(out.arrays)
    return list(zip(cols["y"].tolist(), cols["n"].tolist(), strict=True))


def test_alone_runs_at_once(model: ServedModel) -> None:
    async def main() -> float:
        batcher = Batcher(model, max_batch_wait_ms=500)
        started = time.perf_counter()
        out = await batcher.submit(rows(model, 1.0))
        elapsed = time.perf_counter() - started
        assert answer(out) == [(10.0, 1)]
        await batcher.close()
        return elapsed

    assert asyncio.run(main()) < 0.25  # never the 500 ms wait


def test_a_fault_delay_slows_every_predict_call(model: ServedModel) -> None:
    """The ``fault_delay_ms`` drill: each predict call sleeps that long, answers stay right."""

    async def main(delay_ms: float) -> float:
        batcher = Batcher(model, max_batch_wait_ms=0, fault_delay_ms=delay_ms)
        started = time.perf_counter()
        for _ in range(3):
            assert answer(await batcher.submit(rows(model, 2.0))) == [(20.0, 1)]
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert asyncio.run(main(100.0)) >= 0.3
    with pytest.raises(ValueError, match="delay"):
        Batcher(model, fault_delay_ms=-1)


def test_a_slow_model_leaves_the_loop_free_and_a_quick_one_runs_inline(
    model: ServedModel,
) -> None:
    """A request alone runs on the loop's thread only when predict calls are quick; a
    slow model's predict runs on the predict thread, so the loop goes on meanwhile."""

    async def ticks_during(batcher: Batcher, wait: float) -> int:
        ticks = 0
        done = False

        async def tick() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.002)

        ticker = asyncio.get_running_loop().create_task(tick())
        await asyncio.sleep(0)
        await batcher.submit(rows(model, 1.0, wait=wait))
        done = True
        await ticker
        return ticks

    async def main() -> tuple[int, int, float]:
        batcher = Batcher(model, max_batch_wait_ms=0)
        slow = [await ticks_during(batcher, 0.05) for _ in range(3)]
        quick = Batcher(model, max_batch_wait_ms=0)
        for _ in range(30):
            await quick.submit(rows(model, 1.0))
        inline = await ticks_during(quick, 0.0)
        await batcher.close()
        await quick.close()
        return min(slow), inline, quick._predict_s

    slow, _inline, mean_s = asyncio.run(main())
    assert slow >= 5  # the loop ticked through every 50 ms predict
    assert mean_s < 0.005  # the quick model is known as quick: it runs inline


def test_concurrent_requests_share_a_batch_and_get_their_own_rows(model: ServedModel) -> None:
    async def main() -> None:
        metrics = ServingMetrics()
        batcher = Batcher(model, max_batch_size=8, metrics=metrics.for_model("tens", "1"))
        first = batcher.submit(rows(model, 0.0, wait=0.2))  # runs alone, meanwhile others queue
        await asyncio.sleep(0.05)
        futures = [batcher.submit(rows(model, float(i), float(i) + 0.5)) for i in range(1, 4)]
        results = await asyncio.gather(first, *futures)
        assert answer(results[0]) == [(0.0, 1)]
        assert [answer(r) for r in results[1:]] == [
            [(10.0 * i, 6), (10.0 * i + 5, 6)] for i in range(1, 4)
        ]
        text = metrics.exposition().decode()
        assert 'opsloop_serving_batch_size_count{model="tens",version="1"} 2.0' in text
        await batcher.close()

    asyncio.run(main())


def test_batches_hold_at_most_max_batch_size_rows(model: ServedModel) -> None:
    async def main() -> None:
        batcher = Batcher(model, max_batch_size=4)
        block = batcher.submit(rows(model, 0.0, wait=0.1))
        await asyncio.sleep(0.02)
        futures = [batcher.submit(rows(model, float(i))) for i in range(10)]
        sizes = [answer(r)[0][1] for r in await asyncio.gather(*futures)]
        assert max(sizes) == 4 and sum(1 for s in sizes if s == 4) >= 8
        too_big = await batcher.submit(rows(model, *[1.0] * 6))  # runs alone
        assert {n for _, n in answer(too_big)} == {6}
        await block
        await batcher.close()

    asyncio.run(main())


def test_a_failing_batch_fails_alone(model: ServedModel) -> None:
    async def main() -> None:
        metrics = ServingMetrics()
        batcher = Batcher(model, max_batch_size=2, metrics=metrics.for_model("tens", "1"))
        block = batcher.submit(rows(model, 0.0, wait=0.1))
        await asyncio.sleep(0.02)
        bad = batcher.submit(rows(model, -1.0))
        mate = batcher.submit(rows(model, 1.0))  # same batch as the bad one
        later = batcher.submit(rows(model, 2.0))  # the next batch
        await block
        with pytest.raises(codec.PredictError, match="ValueError: x must not be negative"):
            await bad
        assert answer(await mate) == [(10.0, 1)]  # predicted again alone: it succeeds
        assert answer(await later) == [(20.0, 1)]
        assert answer(await batcher.submit(rows(model, 3.0))) == [(30.0, 1)]
        text = metrics.exposition().decode()
        assert 'opsloop_serving_errors_total{kind="predict",model="tens",version="1"} 1.0' in text
        await batcher.close()

    asyncio.run(main())


def test_queue_full_and_close_drains(model: ServedModel) -> None:
    async def main() -> None:
        batcher = Batcher(model, max_batch_size=1, max_queue=2)
        running = batcher.submit(rows(model, 1.0, wait=0.1))
        await asyncio.sleep(0.02)
        queued = [batcher.submit(rows(model, 2.0)), batcher.submit(rows(model, 3.0))]
        with pytest.raises(QueueFull, match="max-queue"):
            batcher.submit(rows(model, 4.0))
        await batcher.close()  # finishes what was queued
        assert [answer(f.result()) for f in (running, *queued)] == [
            [(10.0, 1)],
            [(20.0, 1)],
            [(30.0, 1)],
        ]

    asyncio.run(main())


def test_rows_of_different_shapes_are_not_mixed(model: ServedModel) -> None:
    async def main() -> None:
        batcher = Batcher(model)
        block = batcher.submit(rows(model, 0.0, wait=0.1))
        await asyncio.sleep(0.02)
        columnar = batcher.submit(rows(model, 1.0))
        body = orjson.dumps({"instances": [[2.0, 0.0]]})  # one 2-D block: another layout
        positional = batcher.submit(
            codec.decode_invocations(body, "application/json", model.inputs)
        )
        assert answer(await columnar) == [(10.0, 1)]
        assert answer(await positional) == [(20.0, 1)]
        await block
        await batcher.close()

    asyncio.run(main())


def test_model_path_loads_by_folder_name(model: ServedModel, tmp_path: Path) -> None:
    assert model.name == "tens" and model.version == "1"
    assert model.metadata()["inputs"] == [
        {"name": "x", "datatype": "FP64", "shape": [-1]},
        {"name": "wait", "datatype": "FP64", "shape": [-1]},
    ]
