"""The dynamic batcher with a fake model: batching, bounds, deadlines, failures.

Event-driven, not timed: the fake model can hold its batches at a gate, and says when one has
started, so a test waits for exactly the state it needs (a batch running, two at once)
instead of sleeping and hoping the machine was fast enough.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.core.batcher import Batcher
from service.core.errors import DeadlineExceeded, Overloaded
from service.core.outputs import ModelOutputs

WAIT_S = 10.0  # the longest any event may take, on a loaded machine


class RecordingModel:
    """Returns each row's first value as its 'logit' (and its negation as its 'features'), and
    records the batch sizes it saw.

    With `gated`, each batch waits (on the model's thread) until `open_gate`; `running(n)`
    returns once n batches have started."""

    def __init__(self, gated: bool = False, fail: bool = False):
        self.batches: list[int] = []
        self.fail = fail
        self._gate = threading.Event()
        if not gated:
            self._gate.set()
        self._started = threading.Semaphore(0)

    def __call__(self, batch: np.ndarray) -> ModelOutputs:
        self.batches.append(len(batch))
        self._started.release()
        assert self._gate.wait(WAIT_S), "the test never opened the gate"
        if self.fail:
            raise RuntimeError("model exploded")
        first = batch.reshape(len(batch), -1)[:, :1].copy()
        return ModelOutputs(first, features=-first)

    async def running(self, batches: int = 1) -> None:
        """Until `batches` more batches have started (they may be held at the gate)."""
        def wait() -> None:
            for _ in range(batches):
                assert self._started.acquire(timeout=WAIT_S), "no batch started"

        await asyncio.to_thread(wait)

    def open_gate(self) -> None:
        self._gate.set()


def rows(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32).reshape(-1, 1, 1, 1)


async def test_concurrent_requests_share_one_batch_and_get_their_own_rows():
    model = RecordingModel()
    batcher = Batcher("m", model, max_batch_size=8, max_delay_ms=50)
    results = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(5)))
    assert model.batches == [5]
    assert [float(r.logits[0, 0]) for r in results] == [0, 1, 2, 3, 4]
    assert [float(r.features[0, 0]) for r in results] == [0, -1, -2, -3, -4]
    assert all(r.batch_size == 5 for r in results)
    await batcher.close()


async def test_full_batch_runs_without_waiting_for_the_delay():
    model = RecordingModel()
    batcher = Batcher("m", model, max_batch_size=4, max_delay_ms=1_000_000)
    # With a 1000 s delay, only a full batch can answer within the wait.
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(rows(i)) for i in range(4))),
                           WAIT_S)
    assert model.batches == [4]
    await batcher.close()


async def test_a_request_never_splits_and_big_requests_run_in_slices():
    model = RecordingModel()
    batcher = Batcher("m", model, max_batch_size=4, max_delay_ms=20)
    crops, single = await asyncio.gather(batcher.submit(rows(*range(10))), batcher.submit(rows(99)))
    assert crops.logits[:, 0].tolist() == list(range(10))
    assert crops.features[:, 0].tolist() == [-i for i in range(10)]  # joined like the logits
    assert single.logits[0, 0] == 99
    # the 10-image request ran alone, in slices of 4; the single one in the next batch
    assert model.batches == [4, 4, 2, 1]
    await batcher.close()


async def test_queue_bound_sheds_at_once_with_retry_after():
    model = RecordingModel(gated=True)
    batcher = Batcher("m", model, max_batch_size=2, max_delay_ms=1, max_queue=3)
    first = asyncio.ensure_future(batcher.submit(rows(1, 2)))
    await model.running()  # the first batch is held at the gate: its images left the queue
    queued = asyncio.ensure_future(batcher.submit(rows(3, 4, 5)))
    await asyncio.sleep(0)  # let it join the queue (3 images, the bound)
    with pytest.raises(Overloaded) as info:
        await batcher.submit(rows(6))
    assert info.value.retry_after_s >= 1
    model.open_gate()
    await asyncio.gather(first, queued)
    await batcher.close()


async def test_a_request_whose_deadline_passed_while_queued_is_not_run():
    model = RecordingModel(gated=True)
    batcher = Batcher("m", model, max_batch_size=1, max_delay_ms=1)
    first = asyncio.ensure_future(batcher.submit(rows(1)))
    await model.running()
    # Queued behind the running batch, with a deadline that passes before it can run.
    late = asyncio.ensure_future(batcher.submit(rows(2), deadline=time.monotonic() - 0.001))
    await asyncio.sleep(0)
    model.open_gate()
    with pytest.raises(DeadlineExceeded):
        await late
    await first
    assert model.batches == [1]  # the expired request never reached the model
    await batcher.close()


async def test_cancelled_request_is_dropped_before_the_model():
    model = RecordingModel(gated=True)
    batcher = Batcher("m", model, max_batch_size=1, max_delay_ms=1)
    first = asyncio.ensure_future(batcher.submit(rows(1)))
    await model.running()
    abandoned = asyncio.ensure_future(batcher.submit(rows(2)))
    await asyncio.sleep(0)
    abandoned.cancel()
    model.open_gate()
    await first
    # A later request runs after the abandoned one's turn: it was skipped, not run.
    assert (await batcher.submit(rows(3))).logits[0, 0] == 3
    assert model.batches == [1, 1]
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
    model = RecordingModel(gated=True)
    batcher = Batcher("m", model, max_batch_size=1, max_delay_ms=0, instances=2)
    both = asyncio.gather(batcher.submit(rows(1)), batcher.submit(rows(2)))
    # Both batches start while the first is still held: one instance could not do that.
    await model.running(2)
    assert batcher.in_flight == 2
    model.open_gate()
    await both
    assert model.batches == [1, 1]
    await batcher.close()
