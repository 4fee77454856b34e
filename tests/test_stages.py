import random
import threading
import time

import pytest

from streamseg.stages import Stage, Stages


def _jittery(fn, seed):
    rng = random.Random(seed)
    lock = threading.Lock()

    def work(item):
        with lock:
            pause = rng.uniform(0, 0.004)
        time.sleep(pause)
        return fn(item)

    return work


@pytest.mark.parametrize("workers", [1, 3])
def test_output_keeps_input_order_whatever_the_stage_timings(workers):
    stages = [
        Stage("double", _jittery(lambda x: x * 2, 1), workers=workers),
        Stage("order", _jittery(lambda x: x, 2)),  # one worker: sees its input in order
        Stage("inc", _jittery(lambda x: x + 1, 3), workers=workers),
    ]
    assert list(Stages(range(200), stages, queue_size=2)) == [2 * i + 1 for i in range(200)]


def test_one_worker_stage_after_parallel_stage_sees_items_in_order():
    seen = []
    stages = [Stage("scramble", _jittery(lambda x: x, 4), workers=4), Stage("record", seen.append)]
    list(Stages(range(100), stages))
    assert seen == list(range(100))


def test_a_failing_stage_stops_everything_promptly():
    def explode(x):
        if x == 5:
            raise ValueError("boom at 5")
        return x

    started = time.monotonic()
    pipeline = Stages(range(10**9), [Stage("slow", lambda x: x, workers=2), Stage("explode", explode)])
    received = []
    with pytest.raises(ValueError, match="boom at 5"):
        for item in pipeline:
            received.append(item)
    assert received == [0, 1, 2, 3, 4]
    assert time.monotonic() - started < 5
    assert not any(t.is_alive() for t in pipeline._threads)


def test_a_failing_source_is_raised_in_the_consumer():
    def items():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(Stages(items(), [Stage("id", lambda x: x)]))


def test_queues_stay_bounded_behind_a_slow_stage():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    pipeline = Stages(items(), [Stage("fast", lambda x: x), Stage("slow", lambda x: time.sleep(0.01) or x)], queue_size=2)
    iterator = iter(pipeline)
    for _ in range(5):
        next(iterator)
    time.sleep(0.2)
    # Source queue, fast stage, its outbox, the slow stage and its outbox hold at most a few items each.
    assert len(produced) <= 5 + 4 * 3
    iterator.close()
    assert not any(t.is_alive() for t in pipeline._threads)


def test_setup_runs_once_in_each_worker_thread_and_its_failure_surfaces():
    local, setups = threading.local(), []

    def setup():
        local.ready = True
        setups.append(threading.current_thread().name)

    def work(x):
        assert getattr(local, "ready", False)  # the setup ran in this very thread
        return x

    assert list(Stages(range(20), [Stage("a", work, workers=3, setup=setup)])) == list(range(20))
    assert len(setups) == 3 and len(set(setups)) == 3

    def broken():
        raise RuntimeError("no threads for you")

    with pytest.raises(RuntimeError, match="no threads for you"):
        list(Stages(range(5), [Stage("a", work, setup=broken)]))
