"""How many CPU threads torch's operators use, chosen per image from what the machine is doing.

On a quiet CPU every operator runs on all the process's threads. When other processes compete
for the cores, the same setting collapses: torch's OpenMP runtime (libgomp in the PyPI wheels)
keeps a thread that waits at a barrier *spinning* for a while, so while one of our threads is
preempted by another process its siblings burn their share of the CPU waiting for it. SAM 2's
mask decoder (thousands of small operators per image, one barrier each) took 15x its quiet time
beside two busy processes on a 2-core CPU (``bench/bench_throughput.py --scenarios contention``). A global ``OMP_WAIT_POLICY=PASSIVE`` cured that but made the quiet run 30 % slower,
because then every barrier sleeps and wakes even when nothing else runs.

So the count is chosen per image (:func:`intra_op_threads`, used by
:meth:`ovpanoptic.pipeline.Pipeline.segment_run` around each image's segmentation, whoever calls it) from a reading of the machine at that moment (:func:`read_load`):

* **quiet** (no other runnable task, or at least as many idle cores as our threads): the process's
  own setting, unchanged: all cores, with OpenMP spinning between the many small operators;
* **some cores idle** (two or more): only that many threads, so no sibling waits on a preempted one;
* **no more than one idle core**: one thread *more* than the CPUs. Every thread shares a core then
  anyway, and with more OpenMP threads than CPUs libgomp spins only briefly before sleeping (its
  documented rule for ``GOMP_SPINCOUNT``), so a waiting thread yields its core instead of spinning
  on it. Measured beside two busy processes on 2 cores: faster than one thread (no barriers) and
  than two (spinning) for the image encoders. ``docs/scale.md`` has the numbers.

A stage made of many small operators (SAM 2's prompt decoding: a barrier every ~0.1 ms) runs
single-threaded while the process has more threads than CPUs (:func:`many_small_ops`): there a
barrier costs more than the operator gains from a second thread.

``pipeline.threads`` (:class:`~ovpanoptic.config.PipelineSettings`) is ``"auto"`` (the above) or a
fixed count. Only CPU devices are touched: on CUDA or MPS the models do not run on these threads.

The choice itself (:func:`choose_threads`) is a pure function of a :class:`LoadReading`, so it is
tested with made-up readings; :func:`read_load` reads Linux's ``/proc`` (elsewhere it returns
``None``, and the process's own count is kept).
Nothing here imports torch at import time, and nothing is kept in module globals.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_THREADS",
    "THREADS_AUTO",
    "LoadReading",
    "ThreadChoice",
    "check_threads_setting",
    "choose_threads",
    "intra_op_threads",
    "many_small_ops",
    "read_load",
    "small_ops_threads",
    "usable_cpus",
]

log = logging.getLogger(__name__)

#: The ``pipeline.threads`` value that chooses the count per image from the machine's load.
THREADS_AUTO = "auto"

#: Samples :func:`read_load` takes, and the pause between them: the median of a few readings
#: over ~10 ms ignores a task that ran for an instant, not a process that keeps running.
LOAD_SAMPLES = 5
LOAD_INTERVAL_S = 0.002


#: The largest fixed ``pipeline.threads``: more threads than any CPU here has cores only make each
#: barrier wait longer, and tens of thousands make OpenBLAS fail to start its threads (a crash, not an error).
MAX_THREADS = 256


def check_threads_setting(value: object) -> int | str:
    """``value`` if it is a valid ``pipeline.threads`` setting: :data:`THREADS_AUTO` or an int from 1
    to :data:`MAX_THREADS`.

    :raises ValueError: anything else, with a message that says what is accepted.
    """
    if value == THREADS_AUTO:
        return THREADS_AUTO
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_THREADS:
        return value
    raise ValueError(
        f"pipeline.threads must be 'auto' or a number of threads from 1 to {MAX_THREADS} (at most the CPUs is "
        f"what helps), got {value!r}"
    )


@dataclass(frozen=True)
class LoadReading:
    """What the machine is doing, for :func:`choose_threads`.

    :param cpus: CPUs this process may use (its affinity mask, capped by a cgroup CPU quota).
    :param others_running: runnable tasks (threads) on the machine that are not this process's.
    """

    cpus: int
    others_running: int

    def __post_init__(self) -> None:
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or self.cpus < 1:
            raise ValueError(f"cpus must be an int >= 1, got {self.cpus!r}")
        if isinstance(self.others_running, bool) or not isinstance(self.others_running, int) or self.others_running < 0:
            raise ValueError(f"others_running must be an int >= 0, got {self.others_running!r}")

    @property
    def idle_cpus(self) -> int:
        """CPUs no other process is running on (0 when they are all taken)."""
        return max(0, self.cpus - self.others_running)


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count for one image and why.

    :param threads: torch intra-op threads (>= 1).
    :param reason: in words, for the log (``-v``).
    :param reading: the load reading it was chosen from (``None`` for a fixed setting).
    """

    threads: int
    reason: str
    reading: LoadReading | None = None

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {self.threads!r}")


def choose_threads(setting: int | str, reading: LoadReading | None, *, base: int) -> ThreadChoice:
    """The intra-op thread count for ``setting`` given the machine's ``reading`` (pure).

    :param setting: ``pipeline.threads``: a count (used as is), or :data:`THREADS_AUTO`.
    :param reading: the load now; needed for ``"auto"`` (``None`` there means "unknown": ``base``).
    :param base: the process's own count (``torch.get_num_threads()`` before any choice: its
        default is the CPUs, ``OMP_NUM_THREADS`` or a caller's ``torch.set_num_threads`` change it).
    :raises ValueError: an invalid ``setting`` or ``base``.
    """
    setting = check_threads_setting(setting)
    if base < 1:
        raise ValueError(f"base must be >= 1, got {base}")
    if setting != THREADS_AUTO:
        return ThreadChoice(int(setting), f"pipeline.threads = {setting}")
    if reading is None:
        return ThreadChoice(base, "no load reading: the process's own count")
    idle, cpus = reading.idle_cpus, reading.cpus
    seen = f"{reading.others_running} other runnable task(s) on {cpus} CPU(s)"
    if reading.others_running == 0 or idle >= base:
        return ThreadChoice(base, f"quiet: {seen}", reading)
    if idle >= 2:
        return ThreadChoice(idle, f"{seen}: only the {idle} idle CPUs, no thread waits on a preempted sibling", reading)
    if base >= cpus:
        return ThreadChoice(
            cpus + 1, f"{seen}: every core shared, one thread more than CPUs so OpenMP yields instead of spinning", reading
        )
    return ThreadChoice(1, f"{seen}: every core shared, one thread (no barriers)", reading)


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs a cgroup CPU quota allows this process (v2 ``cpu.max``, v1 ``cfs_quota_us``), or ``None``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.lstrip("/")
        if controllers == "":  # cgroup v2
            candidates = [(root / rel / "cpu.max", None), (root / "cpu.max", None)]
        elif "cpu" in controllers.split(","):
            base = root / controllers
            candidates = [(base / rel / "cpu.cfs_quota_us", base / rel / "cpu.cfs_period_us")]
        else:
            continue
        for quota_file, period_file in candidates:
            try:
                if period_file is None:
                    quota, period = quota_file.read_text().split()[:2]
                else:
                    quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
            except (OSError, ValueError):
                continue
            if quota in ("max", "-1") or float(period) <= 0:
                return None
            return float(quota) / float(period)
    return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (``os.cpu_count()`` where there is none),
    capped by a cgroup CPU quota rounded up."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def _running_machine() -> int | None:
    """Runnable tasks on the machine now (``procs_running`` of ``/proc/stat``), ``None`` off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _running_here() -> int:
    """This process's threads that are runnable now (state ``R`` in ``/proc/self/task/*/stat``)."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue  # the thread ended
        if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R":
            count += 1
    return max(1, count)  # the reading thread itself runs


def read_load(*, samples: int = LOAD_SAMPLES, interval_s: float = LOAD_INTERVAL_S) -> LoadReading | None:
    """The machine's load now: :func:`usable_cpus` and the median over ``samples`` readings of the
    runnable tasks that are not this process's threads (Linux ``/proc``); ``None`` where ``/proc``
    cannot be read (macOS, Windows)."""
    counts = []
    for i in range(max(1, samples)):
        if i:
            time.sleep(interval_s)
        machine = _running_machine()
        if machine is None:
            return None
        counts.append(max(0, machine - _running_here()))
    return LoadReading(usable_cpus(), int(statistics.median_low(counts)))


@contextmanager
def intra_op_threads(
    setting: int | str, device: str, *, reader: Callable[[], LoadReading | None] | None = None
) -> Iterator[ThreadChoice | None]:
    """Run the body with torch's intra-op thread count chosen by :func:`choose_threads`, then
    restore the count it found (so the choice holds for one image and nothing else).

    :param setting: ``pipeline.threads`` (``"auto"`` or a count).
    :param device: the pipeline's resolved device; anything but ``cpu`` changes nothing (yields ``None``).
    :param reader: the load reading (default :func:`read_load`; tests pass a fake); called only
        for ``"auto"``.
    :raises ValueError: an invalid ``setting``.
    """
    check_threads_setting(setting)
    if device.split(":", 1)[0] != "cpu":
        yield None
        return
    import torch

    base = torch.get_num_threads()
    reading = (reader or read_load)() if setting == THREADS_AUTO else None
    choice = choose_threads(setting, reading, base=base)
    log.debug("intra-op threads %d: %s", choice.threads, choice.reason)
    with _torch_threads(base, choice.threads):
        yield choice


@contextmanager
def _torch_threads(current: int, threads: int) -> Iterator[None]:
    """torch's intra-op count set to ``threads`` for the body, then ``current`` (what it was) again."""
    import torch

    if threads != current:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != current:
            torch.set_num_threads(current)


def small_ops_threads(current: int, cpus: int) -> int:
    """The thread count for a stage of many small operators (pure): 1 when ``current`` is more than
    ``cpus`` (every core is shared: see the module docstring), else ``current``."""
    if current < 1 or cpus < 1:
        raise ValueError(f"current and cpus must be >= 1, got {current} and {cpus}")
    return 1 if current > cpus else current


@contextmanager
def many_small_ops(device: str) -> Iterator[int | None]:
    """Run the body, a stage of many small operators, with :func:`small_ops_threads` torch threads,
    then restore the count. Components call it around such a stage; anything but a ``cpu``
    ``device`` changes nothing (yields ``None``).
    """
    if device.split(":", 1)[0] != "cpu":
        yield None
        return
    import torch

    current = torch.get_num_threads()
    threads = small_ops_threads(current, usable_cpus())
    with _torch_threads(current, threads):
        yield threads
