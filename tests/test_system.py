"""CPU inference workers are sized by the CPUs the process may use, not the host's core count."""

import os

import pytest

from streamseg import system
from streamseg.system import cgroup_cpu_quota, usable_cpus


@pytest.fixture
def host_of_64(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)


def test_cgroup_v2_quota_caps_the_host_cores(tmp_path, host_of_64):
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # docker --cpus 2
    assert cgroup_cpu_quota(tmp_path) == 2.0 and usable_cpus(tmp_path) == 2


def test_cgroup_v1_quota_caps_the_host_cores(tmp_path, host_of_64):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")  # 1.5 CPUs: two threads can use them
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 2


@pytest.mark.parametrize("files", [{"cpu.max": "max 100000\n"}, {"cpu/cpu.cfs_quota_us": "-1\n",
                                                                 "cpu/cpu.cfs_period_us": "100000\n"}, {}])
def test_no_quota_leaves_the_affinity(tmp_path, host_of_64, files):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) is None and usable_cpus(tmp_path) == 64


def test_affinity_counts_not_the_host(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})  # taskset -c 0-2
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert usable_cpus(tmp_path) == 3


def test_the_segmenter_sizes_its_workers_by_usable_cpus(tiny_checkpoint, monkeypatch):
    from streamseg.config import SegmentConfig
    from streamseg.pipeline import Segmenter

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr("streamseg.pipeline.usable_cpus", lambda: 2)
    segmenter = Segmenter(SegmentConfig(model=str(tiny_checkpoint), device="cpu"))
    assert (segmenter.infer_workers, segmenter.threads_per_worker) == (2, 1)
    assert system.CGROUP_ROOT.name == "cgroup"
