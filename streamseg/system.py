"""What this process may use and has used: CPUs (to size the CPU inference workers) and memory.

``os.cpu_count()`` counts the host's cores. A container limited to 2 CPUs on a 64-core host sees 64
and would start 16-thread workers that then fight over 2 CPUs' worth of time. Both limits count:
the cores the process may run on (affinity: ``taskset``, cpusets) and the CPU time it may use
(the cgroup's quota: ``docker --cpus``, Kubernetes CPU limits).
"""

from __future__ import annotations

import math
import os
import resource
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Up to this many usable CPUs, the video encoder and decoder run in one thread each. Their own defaults
# (x264: 1.5 threads a core; FFmpeg's decoders: a frame thread a core, plus one) cost more CPU a frame and
# hold more frames, while the model and the overlay need those CPUs (measured on 2 cores, 2026-12-01:
# x264 in one thread 14-16 ms of CPU a 1080p frame against 18-21; frame threads held ~40 MB at 1080p).
FEW_CPUS = 4


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process can keep busy: its affinity, capped by its cgroup's CPU quota; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def few_cpus() -> bool:
    """Whether this process has so few CPUs that codecs should take one thread each (``FEW_CPUS``)."""
    return usable_cpus() <= FEW_CPUS


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup allows (quota / period), or None without a limit.

    cgroup v2 states it in ``cpu.max`` ("200000 100000", or "max 100000" for none); v1 in
    ``cpu.cfs_quota_us`` (-1 for none) and ``cpu.cfs_period_us``.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def peak_rss_mb() -> float:
    """The most resident memory this process has held so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
