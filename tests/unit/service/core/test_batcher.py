"""The dynamic batcher with a fake model: batching, bounds, deadlines, failures."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from service.core.batcher import Batcher
from service.core.errors import DeadlineExceeded, Overloaded


class RecordingModel:
    """Returns each row's first value as its 'logit' and records the batch sizes it saw."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False):
        self.batches: list[int] = []
        self.delay_s = delay_s
        self.fail = fail

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("model exploded")
        return batch.reshape(len(batch), -1)[:, :1].copy()


def rows(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32).reshape(-1, 1, 1, 1)


async def test_concurrent_requests_share_one_batch_and_get_their_own_rows():
    model = RecordingModel()
    batcher = Batcher("m", model, max_batch_size=8, max_delay_ms=50)
    results = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(5)))
    assert model.batches == [5]
    assert [float(r.logits[0, 0]) for r in results] == [0, 1, 2, 3, 4]
    assert all(r.batch_size == 5 for r in results)
    await batcher.close()


async def test_full_batch_runs_without_waiting_for_the_delay():
    model = RecordingModel()
    batcher = Batcher("m", model, max_batch_size=4, max_delay_ms=10_000)
    started = time.perf_counter()
    await asyncio.gather(*(batcher.submit(rows(i)) for i in range(4)))
    assert time.perf_counter() - started < 2.0
    assert model.batches == [4]
    await batcher.close()


async def test_a_request_never_splits_and_big_requests_run_in_slices():
    model = RecordingModel()
    batcher = Batcher("m", model, max_batch_size=4, max_delay_ms=20)
    crops, single = await asyncio.gather(batcher.submit(rows(*range(10))), batcher.submit(rows(99)))
    assert crops.logits[:, 0].tolist() == list(range(10))
    assert single.logits[0, 0] == 99
    # the 10-image request ran alone, in slices of 4; the single one in the next batch
    assert model.batches == [4, 4, 2, 1]
    await batcher.close()


async def test_queue_bound_sheds_at_once_with_retry_after():
    model = RecordingModel(delay_s=0.2)
    batcher = Batcher("m", model, max_batch_size=2, max_delay_ms=1, max_queue=3)
    first = asyncio.ensure_future(batcher.submit(rows(1, 2)))
    await asyncio.sleep(0.05)  # the first batch is now running
    queued = asyncio.ensure_future(batcher.submit(rows(3, 4, 5)))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await batcher.submit(rows(6))
    assert info.value.retry_after_s >= 1
    await asyncio.gather(first, queued)
    await batcher.close()


async def test_expired_deadline_is_not_run():
    model = RecordingModel(delay_s=0.2)
    batcher = Batcher("m", model, max_batch_size=1, max_delay_ms=1)
    first = asyncio.ensure_future(batcher.submit(rows(1)))
    await asyncio.sleep(0.02)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(rows(2), deadline=time.monotonic() + 0.05)
    await first
    assert model.batches == [1]  # the expired request never reached the model
    await batcher.close()


async def test_cancelled_request_is_dropped_before_the_model():
    model = RecordingModel(delay_s=0.1)
    batcher = Batcher("m", model, max_batch_size=1, max_delay_ms=1)
    first = asyncio.ensure_future(batcher.submit(rows(1)))
    await asyncio.sleep(0.02)
    abandoned = asyncio.ensure_future(batcher.submit(rows(2)))
    await asyncio.sleep(0)
    abandoned.cancel()
    await first
    await asyncio.sleep(0.05)
    assert model.batches == [1]
    await batcher.close()


async def test_model_failure_reaches_every_caller_and_the_batcher_keeps_serving():
    model = RecordingModel(fail=True)
    batcher = Batcher("m", model, max_batch_size=4, max_delay_ms=20)
    outcomes = await asyncio.gather(batcher.submit(rows(1)), batcher.submit(rows(2)),
                                    return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    model.fail = False
    assert (await batcher.submit(rows(7))).logits[0, 0] == 7
    await batcher.close()


async def test_two_instances_run_batches_concurrently():
    model = RecordingModel(delay_s=0.3)
    batcher = Batcher("m", model, max_batch_size=1, max_delay_ms=0, instances=2)
    started = time.perf_counter()
    await asyncio.gather(batcher.submit(rows(1)), batcher.submit(rows(2)))
    # one instance would need 0.6 s; two run side by side (sleep releases the GIL)
    assert time.perf_counter() - started < 0.55
    assert model.batches == [1, 1]
    await batcher.close()
