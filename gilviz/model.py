"""The Tick stream: what the sampler measured, free of any notion of display.

Durations are integer microseconds, so that any aggregate is an exact sum of what
the kernel's schedstat and the GIL probe reported, never an average of labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

BLOCK_REASONS = ("sleep", "io", "lock", "other")


class ThreadTick(NamedTuple):
    """One thread over one tick; the state fields add up to the tick's length."""

    tid: int
    cpu: int  # the core it last ran on, -1 if unknown
    running: int  # on a CPU holding the GIL (or any Python on a build without one)
    native: int  # on a CPU without the GIL and not trying to take it
    waiting: int  # wants the GIL: asleep on it, or on a CPU spinning for it
    runnable: int  # wants a CPU, none free
    sleep: int
    io: int
    lock: int
    other: int
    held: int  # time it held the GIL (may overlap runnable or blocked)
    oncpu: int  # time on a CPU (running + native + the part of waiting spent spinning)

    @property
    def blocked(self) -> int:
        return self.sleep + self.io + self.lock + self.other


class GilTick(NamedTuple):
    """One process's GIL over one tick, from the GIL probe's samples."""

    pid: int
    samples: int
    held: int  # samples that found it locked
    contended: int  # samples that found at least one thread waiting for it
    switches: int  # hand-offs (switch_number delta)
    interp: int = 0  # the interpreter whose GIL it is: 0 is the main one (others: subinterpreters' own)
    holder: int = 0  # the thread that held it in most samples, 0 if none (or before this was recorded)


@dataclass(slots=True)
class Tick:
    """Every thread's state over one time step, per-core load, and the GIL."""

    t: int  # end of the step, microseconds since the recording started
    dt: int  # length of the step, microseconds
    threads: list[ThreadTick] = field(default_factory=list)
    gils: list[GilTick] = field(default_factory=list)
    # per CPU, us busy (any process) since the previous reading; empty on ticks between readings
    core_busy: list[int] = field(default_factory=list)
