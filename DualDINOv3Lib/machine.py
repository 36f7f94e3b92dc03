"""How much of the machine a job uses, stated once: CPU threads and slices per batch. No torch here, so the
Slicer module can check a setting before it starts a worker; :func:`DualDINOv3Lib.runtime.cpu_threads` applies
the thread count to torch and SimpleITK.

- ``DEFAULT_BATCH_SIZE``: slices per forward pass of every inference path (library, commands, Slicer module).
  The paper's dual ViT-B/16 at 512x512 needs at most about 0.3 GB of working memory per slice in float32 and
  0.25 GB in bf16 (``Testing/benchmarks/bench_memory.py``): 4 slices peak at about 2.3 GB for the whole process,
  safe on a 16 GB laptop next to Slicer.
- ``available_memory_bytes()``: memory the system can give a job now without swapping (Linux), for the
  up-front check that a batch fits (:mod:`DualDINOv3Lib.inference.memory`).
- ``available_cpus()``: the logical CPUs this process may run on (its CPU affinity, and a container's CPU
  quota where one is set).
- ``physical_cores()``: the physical cores among them (hyper-threads share a core's arithmetic units, so
  the matrix products inference is made of gain nothing from a second thread per core).
- ``default_threads(reserve)``: the physical cores, shared among the processes ``torchrun`` started on this
  machine, minus ``reserve`` left to the user's other work (the Slicer module reserves one), at least 1.
- ``check_threads(n)``: 1 <= n <= ``available_cpus()``, else a :class:`~DualDINOv3Lib.errors.ConfigError`
  naming the limit: more threads than CPUs only makes them wait for each other.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import subprocess
import sys
from pathlib import Path

from .errors import ConfigError

MEMINFO = Path("/proc/meminfo")
SYSFS_CPU = Path("/sys/devices/system/cpu")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
DEFAULT_BATCH_SIZE = 4


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (free memory plus what the kernel can reclaim), None where unknown."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cpu_set() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _cgroup_quota() -> int | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``: ``QUOTA PERIOD`` or ``max PERIOD``), rounded up."""
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period))) if quota != "max" else None
    except (OSError, ValueError):
        return None


@functools.cache
def available_cpus() -> int:
    """Logical CPUs this process may use (affinity, container quota), at least 1."""
    count = len(_cpu_set()) or 1
    quota = _cgroup_quota()
    return min(count, quota) if quota else count


@functools.cache
def physical_cores() -> int:
    """Physical cores among the CPUs this process may use, at least 1 (logical CPUs where unknown)."""
    cpus = _cpu_set()
    cores = set()
    for cpu in cpus:
        topology = SYSFS_CPU / f"cpu{cpu}" / "topology"
        try:
            cores.add((topology.joinpath("physical_package_id").read_text().strip(),
                       topology.joinpath("core_id").read_text().strip()))  # fmt: skip
        except OSError:
            cores = set()
            break
    count = len(cores) if cores else _macos_physical_cores() or len(cpus)
    return max(1, min(count, available_cpus()))


def _macos_physical_cores() -> int | None:
    if sys.platform != "darwin":
        return None
    try:
        done = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=5)
        return int(done.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def local_processes() -> int:
    """How many processes ``torchrun`` started on this machine (``LOCAL_WORLD_SIZE``), 1 otherwise."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def default_threads(reserve: int = 0) -> int:
    """The default thread count: physical cores per local process, minus ``reserve``, at least 1."""
    return max(1, physical_cores() // local_processes() - reserve)


def check_threads(threads: int) -> int:
    """``threads`` as an int if 1 <= threads <= :func:`available_cpus`; else a ConfigError with the fix."""
    limit = available_cpus()
    try:
        value = None if isinstance(threads, bool) else operator.index(threads)
    except TypeError:
        value = None
    if value is None or not 1 <= value <= limit:
        raise ConfigError(
            f"threads must be a whole number from 1 to {limit} (the CPUs this process may use), got {threads!r}; "
            f"use {default_threads()} (the physical cores) or fewer"
        )
    return value
