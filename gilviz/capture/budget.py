"""What sampling may cost: one CPU budget for the whole sampler, the rates follow it.

Everything the sampler does counts against `--budget` (a share of one core): its ticks (the
per-thread reads, the state rules, the records), its GIL samples, and py-spy's stack dumps.
Every half second the sampler's CPU over the last interval is compared with the budget:
- over it, GIL sampling slows first (down to GIL_HZ_FLOOR), then the lines: py-spy's dumps
  (down to STACKS_HZ_FLOOR; at about 6 ms of CPU each they are the dearest reading) and the
  sampler's own reads of them (`stacks_share`: down to one tick in 5), then idle threads
  are read more sparsely (probes/threads.py's SPARSENESS), then the ticks lengthen (down to
  TICK_HZ_FLOOR) and py-spy's rate with them; more than FAR times over it, all at once;
- under 80 % of it, the ticks come back to the rate asked first, then idle threads' reads,
  then py-spy's dumps, then GIL sampling speeds up to the rate asked.
A timer wake-up alone costs about 25 to 30 us of CPU on the machines measured, so no rate is
ever fixed. Every interval's achieved rates are reported (Stats).
"""

from __future__ import annotations

from typing import Callable

from ..probes.threads import SPARSENESS, read_every_table
from ..stream import Stats

GIL_HZ_FLOOR = 1000  # GIL sampling is never slowed below this (or the tick rate, if lower)...
GIL_HZ_START = 2000
TICK_HZ_FLOOR = 10.0  # ...nor the ticks below this
STACKS_HZ_FLOOR = 1.0  # py-spy's dumps slow to this before the ticks do
ADAPT_EVERY_NS = 500_000_000
SLOW = 0.8  # under this share of the budget, rates go back up
FAR = 2.2  # over this many times the budget, every rate slows at once, not one after the other


class Budget:
    def __init__(self, tick_ns: int, gil_hz: float, cpu_budget: float, cpu_s: Callable[[], float], start_ns: int,
                 stacks_hz: float = 0.0):
        """cpu_s: the CPU the sampler has spent so far (its own and its helpers'), in seconds."""
        self.cpu_budget = cpu_budget
        self.cpu_s = cpu_s
        self.asked_tick_ns = tick_ns
        self.tick_ns = tick_ns
        self.max_tick_ns = max(tick_ns, int(1e9 / TICK_HZ_FLOOR))
        self.asked_stacks_hz = stacks_hz
        self.stacks_share = 1.0  # of the rate asked, before the ticks' slowing
        self.min_period = int(1e9 / gil_hz)
        self.period = max(self.min_period, int(1e9 / GIL_HZ_START))  # then up, as the budget allows
        self.sparseness = SPARSENESS[0]  # how sparsely idle threads are read
        self.next_adapt = start_ns + ADAPT_EVERY_NS
        self._cpu, self._wall, self._samples, self._ticks = cpu_s(), start_ns, 0, 0

    @property
    def max_period(self) -> int:
        """GIL sampling's slowest: GIL_HZ_FLOOR, and never slower than the ticks."""
        return max(self.min_period, min(self.tick_ns, int(1e9 / GIL_HZ_FLOOR)))

    @property
    def stacks_hz(self) -> float:
        """py-spy's rate: the one asked, slowed on its own to its floor, then as much as the ticks are."""
        return self.asked_stacks_hz * self.stacks_share * self.asked_tick_ns / self.tick_ns

    @property
    def _stacks_at_floor(self) -> bool:
        return self.asked_stacks_hz * self.stacks_share <= STACKS_HZ_FLOOR

    # The levers that slow sampling, in the order they are moved; each says whether it could move.
    def _slow_gil(self, factor: float) -> bool:
        if self.period >= self.max_period:
            return False
        self.period = min(self.max_period, int(self.period * factor))
        return True

    def _slow_stacks(self, factor: float) -> bool:
        if self._stacks_at_floor:
            return False
        self.stacks_share = max(STACKS_HZ_FLOOR / self.asked_stacks_hz, self.stacks_share / factor)
        return True

    def _sparser(self, factor: float) -> bool:
        if self.sparseness >= SPARSENESS[-1]:
            return False
        self.sparseness = SPARSENESS[SPARSENESS.index(self.sparseness) + 1]
        return True

    def _slow_ticks(self, factor: float) -> bool:
        self.tick_ns = min(self.max_tick_ns, int(self.tick_ns * factor))
        self.period = min(self.period, self.max_period)
        return True

    def adapt(self, now_ns: int, samples: int, t_us: int, ticks: int = 0) -> Stats | None:
        """Every ADAPT_EVERY_NS: the new periods, and the figures of the last interval."""
        if now_ns < self.next_adapt:
            return None
        cpu = self.cpu_s()
        wall = (now_ns - self._wall) / 1e9
        overhead = (cpu - self._cpu) / wall
        rate = (samples - self._samples) / wall
        tick_rate = (ticks - self._ticks) / wall
        budget = self.cpu_budget
        if overhead > budget:
            factor = min(2.0, overhead / budget)
            levers = (self._slow_gil, self._slow_stacks, self._sparser, self._slow_ticks)
            if overhead > FAR * budget:
                # far over it (a thousand threads starting: their files opened, read at the rate
                # asked), every rate slows at once: a lever a half second, in turn, kept the
                # sampler at two or three times its budget for five seconds
                for lever in levers:
                    lever(factor)
            else:
                any(lever(factor) for lever in levers)  # (the first that can move)
        elif overhead < SLOW * budget:
            if self.tick_ns > self.asked_tick_ns:
                self.tick_ns = max(self.asked_tick_ns, int(self.tick_ns / 1.2))
            elif self.sparseness > SPARSENESS[0]:
                self.sparseness = SPARSENESS[SPARSENESS.index(self.sparseness) - 1]
            elif self.stacks_share < 1.0:
                self.stacks_share = min(1.0, self.stacks_share * 1.2)
            else:
                self.period = max(self.min_period, int(self.period / 1.2))
        self._cpu, self._wall, self._samples, self._ticks = cpu, now_ns, samples, ticks
        self.next_adapt = now_ns + ADAPT_EVERY_NS
        sparse = self.sparseness > SPARSENESS[0]
        return Stats(t_us, round(overhead, 4), round(rate, 1), round(1e9 / self.period, 1),
                     tick_hz=round(tick_rate, 1), tick_hz_target=round(1e9 / self.tick_ns, 1),
                     stacks_hz=round(self.stacks_hz, 3),
                     idle_read_every=read_every_table(self.sparseness)[-1] if sparse else None)
