"""The sampling thread kept on one core, the least busy one.

Between two of the sampler's wake-ups the workload runs on its core and evicts part of what a
tick touches; a thread the kernel moves from core to core finds the rest in the other core's
cache. Kept on one core, a tick of 8 spinning threads cost 111 to 118 us of the sampler's CPU
where it cost 157 free to move, and a GIL sample 19 us where it cost 21 (the clock_nanosleep
floor beside the same workload did not change: 16.8 us a wake-up either way). The core is the
least busy of those the process may use, over the last interval, chosen again when another is
much less busy: on an idle core the sampler takes nothing from the workload, as the kernel's own
choice of an idle core would. (The workload's throughput is no better for it: a thread kept on
a core wakes there even when another is idle, and takes it from whatever runs there; see the
README's cost section for what making it yield did. What others leave of its core, `others_share`,
is what capture/budget.py lets GIL sampling go faster by.) Threads and processes the sampler starts
(its helpers) are started unpinned, and the thread is given back its cores when sampling ends
(a workload started from it next, as `gilviz compare` does, must not inherit one core).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

FIRST_CHOICE_US = 200_000  # of per-core load before the first choice (/proc/stat counts in 10 ms steps)
CHOOSE_EVERY_US = 2_000_000  # ...and between two choices
MOVE_WHEN_IDLER_BY = 0.25  # another core must have been idle this much more of the interval to move there


class OneCore:
    """Where the sampling thread runs: `consider` each reading of per-core load, `release` at the end."""

    def __init__(self) -> None:
        try:
            self.allowed = frozenset(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # (no affinity here: the thread stays where the kernel puts it)
            self.allowed = frozenset()
        self.core: int | None = None
        self._given_up = False  # a core refused: the thread stays free
        self._busy: list[int] = []  # us busy per core since the last choice
        self._span_us = 0
        self._own_us = time.thread_time_ns() // 1000  # the sampling thread's CPU (it makes the OneCore)
        self._others_us = 0  # ...and others' on its core, since others_share was last asked
        self._others_span_us = 0

    def consider(self, core_busy: list[int], span_us: int) -> None:
        """One reading of per-core load (us busy per core over `span_us`): after FIRST_CHOICE_US of
        them, and then every CHOOSE_EVERY_US, the thread goes to the least busy core, if it is idler
        by enough than its own."""
        if not core_busy:
            return
        self._count_others(core_busy, span_us)
        if self._given_up or len(self.allowed) < 2:
            return
        if len(self._busy) < len(core_busy):
            self._busy.extend([0] * (len(core_busy) - len(self._busy)))
        for cpu, us in enumerate(core_busy):
            self._busy[cpu] += us
        self._span_us += span_us
        if self._span_us < (FIRST_CHOICE_US if self.core is None else CHOOSE_EVERY_US):
            return
        busy, span = self._busy, self._span_us
        self._busy, self._span_us = [0] * len(busy), 0
        cores = [cpu for cpu in sorted(self.allowed) if cpu < len(busy)]
        if not cores:
            return
        best = min(cores, key=lambda cpu: busy[cpu])
        if self.core is not None and self.core < len(busy):
            if busy[self.core] - busy[best] < MOVE_WHEN_IDLER_BY * span:
                return
        self._pin(best)

    def _count_others(self, core_busy: list[int], span_us: int) -> None:
        """Others' time on the sampling thread's core: its busy time less the thread's own (on no one
        core, the least busy: where the kernel wakes a thread when it can)."""
        own = time.thread_time_ns() // 1000
        own_us, self._own_us = own - self._own_us, own
        if self.core is not None and self.core < len(core_busy):
            busy = core_busy[self.core]
        else:
            busy = min((core_busy[cpu] for cpu in self.allowed if cpu < len(core_busy)), default=min(core_busy))
        self._others_us += busy - own_us  # (/proc/stat counts in 10 ms steps: it evens out over readings)
        self._others_span_us += span_us

    def others_share(self) -> float | None:
        """The share of its core's time others kept busy since the last call (None: no reading)."""
        others, span = self._others_us, self._others_span_us
        self._others_us = self._others_span_us = 0
        return max(0, others) / span if span > 0 else None

    def _pin(self, core: int) -> None:
        try:
            os.sched_setaffinity(0, {core})
        except OSError:  # (its cores changed under it: a cpuset moved, a core went offline)
            self.core, self._given_up = None, True
            self._restore()
            return
        self.core = core

    def _restore(self) -> None:
        try:
            os.sched_setaffinity(0, self.allowed)
        except OSError:
            pass

    @contextlib.contextmanager
    def unpinned(self) -> Iterator[None]:
        """Threads and processes started in it may run on any of the process's cores."""
        if self.core is None:
            yield
            return
        self._restore()
        try:
            yield
        finally:
            self._pin(self.core)

    def release(self) -> None:
        if self.core is not None:
            self.core = None
            self._restore()
