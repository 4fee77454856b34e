import threading
import time

import numpy as np
import pytest

from streamseg.engine import Predictor
from streamseg.inference import InferencePool
from streamseg.instances import Frame
from streamseg.models import load_model


class GatedPredictor:
    """Records each forward pass's frames; the first pass waits until the test opens the gate, so that
    requests pile up behind it as they would behind a slow pass."""

    def __init__(self, fail_on: int | None = None):
        self.passes: list[list[int]] = []
        self.gate = threading.Event()
        self.fail_on = fail_on

    def forward(self, frames):
        self.passes.append([f.index for f in frames])
        if len(self.passes) == 1:
            assert self.gate.wait(10)
        if self.fail_on in self.passes[-1]:
            raise ValueError("broken frame")
        return frames

    def postprocess(self, raws, frames):
        return [f"instances of {f.index}" for f in frames]


def frame(index):
    return Frame(index, index / 30, np.zeros((4, 4, 3), np.uint8))


def ask(pool, results, index, urgent=False):
    def run():
        try:
            results[index] = pool.infer([frame(index)], urgent).found
        except ValueError as exc:
            results[index] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def queue_behind_first(pool, predictor, requests):
    """Start request 0 (held in its pass), then ``requests`` (index, urgent) one after another."""
    results = {}
    threads = [ask(pool, results, 0)]
    while not predictor.passes:
        time.sleep(0.01)
    for index, urgent in requests:
        threads.append(ask(pool, results, index, urgent))
        while len(pool._urgent) + len(pool._waiting) < len(threads) - 1:  # queued before the next one asks
            time.sleep(0.01)
    predictor.gate.set()
    for thread in threads:
        thread.join(10)
    pool.close()
    return results


def test_requests_are_served_in_order_with_live_ones_first():
    predictor = GatedPredictor()
    pool = InferencePool(predictor, workers=1, threads_per_worker=None, max_batch=1)
    results = queue_behind_first(pool, predictor, [(1, False), (2, False), (3, True), (4, False), (5, True)])
    assert predictor.passes == [[0], [3], [5], [1], [2], [4]]
    assert all(results[i] == [f"instances of {i}"] for i in range(6))


def test_waiting_requests_of_several_sources_share_one_pass():
    predictor = GatedPredictor()
    pool = InferencePool(predictor, workers=1, threads_per_worker=None, max_batch=3)
    results = queue_behind_first(pool, predictor, [(1, False), (2, False), (3, True), (4, False)])
    # Behind the held pass: the live request first, then files in order while they fit in three frames.
    assert predictor.passes == [[0], [3, 1, 2], [4]]
    assert (pool.passes, pool.merged_requests) == (3, 5)
    assert all(results[i] == [f"instances of {i}"] for i in range(5))  # each its own, out of the merged pass


def test_a_failed_pass_fails_every_request_in_it_and_the_pool_goes_on():
    predictor = GatedPredictor(fail_on=2)
    pool = InferencePool(predictor, workers=1, threads_per_worker=None, max_batch=2)
    results = queue_behind_first(pool, predictor, [(1, False), (2, False), (3, False)])
    assert predictor.passes == [[0], [1, 2], [3]]
    assert isinstance(results[1], ValueError) and isinstance(results[2], ValueError)
    assert results[0] == ["instances of 0"] and results[3] == ["instances of 3"]


def test_a_request_without_frames_is_answered_at_once():
    # A batch whose every frame --stride skips asks with no frames; a pass of none would divide by zero.
    predictor = GatedPredictor()
    pool = InferencePool(predictor, workers=1, threads_per_worker=None, max_batch=1)
    assert pool.infer([]).found == [] and predictor.passes == []
    pool.close()


def test_a_closed_pool_refuses_new_requests():
    pool = InferencePool(GatedPredictor(), workers=2, threads_per_worker=None, max_batch=1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.infer([frame(0)])


class GatedModel(GatedPredictor):
    """A real predictor behind the gate."""

    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor

    def forward(self, frames):
        super().forward(frames)
        return self.predictor.forward(frames)

    def postprocess(self, raws, frames):
        return self.predictor.postprocess(raws, frames)


def test_frames_of_two_sources_in_one_pass_get_what_each_gets_alone(tiny_checkpoint):
    # Cross-source batching with a real model: frames of two sizes (two sources) merged into one pass.
    predictor = Predictor(load_model(str(tiny_checkpoint), device="cpu"), score_threshold=0.05)
    rng = np.random.default_rng(8)
    frames = {index: Frame(index, 0.0, rng.integers(0, 255, shape, dtype=np.uint8))
              for index, shape in [(0, (64, 64, 3)), (1, (96, 160, 3)), (2, (120, 90, 3))]}
    gated = GatedModel(predictor)
    pool = InferencePool(gated, workers=1, threads_per_worker=None, max_batch=2)
    results = {}

    def run(index):
        results[index] = pool.infer([frames[index]]).found[0]

    threads = [threading.Thread(target=run, args=(0,))]
    threads[0].start()
    while not gated.passes:
        time.sleep(0.01)
    for index in (1, 2):
        threads.append(threading.Thread(target=run, args=(index,)))
        threads[-1].start()
    while len(pool._waiting) < 2:
        time.sleep(0.01)
    gated.gate.set()
    for thread in threads:
        thread.join(30)
    pool.close()
    assert sorted(gated.passes[1]) == [1, 2]
    for index in (1, 2):
        alone = predictor.predict([frames[index]])[0]
        found = results[index]
        assert (found.height, found.width) == frames[index].image.shape[:2]
        assert len(found) == len(alone) > 0 and np.allclose(found.boxes, alone.boxes, atol=1e-3)
        assert np.array_equal(found.class_ids, alone.class_ids)
