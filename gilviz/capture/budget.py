"""What GIL sampling may cost: a rate that follows the CPU budget.

A timer wake-up costs about 25 to 30 us of CPU on the machines measured, so GIL samples
cannot be had at a fixed 10 kHz inside a budget of a few percent of a core: the rate is
raised while the sampler spends less than its budget and lowered while it spends more,
never below GIL_HZ_FLOOR nor above the rate asked. Every adjustment is reported (Stats).
"""

from __future__ import annotations

from typing import Callable

from ..stream import Stats

GIL_HZ_FLOOR = 1000  # the CPU budget never slows GIL sampling below this
GIL_HZ_START = 2000
ADAPT_EVERY_NS = 500_000_000


class GilBudget:
    def __init__(self, tick_ns: int, gil_hz: float, cpu_budget: float, cpu_s: Callable[[], float], start_ns: int):
        """cpu_s: the CPU the sampler has spent so far (its own and its helpers'), in seconds."""
        self.cpu_budget = cpu_budget
        self.cpu_s = cpu_s
        self.min_period = int(1e9 / gil_hz)
        self.period = max(self.min_period, int(1e9 / GIL_HZ_START))  # then up, as the budget allows
        self.max_period = max(self.min_period, min(tick_ns, int(1e9 / GIL_HZ_FLOOR)))
        self.next_adapt = start_ns + ADAPT_EVERY_NS
        self._cpu, self._wall, self._samples = cpu_s(), start_ns, 0

    def adapt(self, now_ns: int, samples: int, t_us: int) -> Stats | None:
        """Every ADAPT_EVERY_NS: the new sampling period, and the figures of the last interval."""
        if now_ns < self.next_adapt:
            return None
        cpu = self.cpu_s()
        wall = (now_ns - self._wall) / 1e9
        overhead = (cpu - self._cpu) / wall
        rate = (samples - self._samples) / wall
        # spend the budget on GIL samples: slower when over, faster when under
        if overhead > self.cpu_budget:
            self.period = min(self.max_period, int(self.period * min(2.0, overhead / self.cpu_budget)))
        elif overhead < 0.8 * self.cpu_budget:
            self.period = max(self.min_period, int(self.period / 1.2))
        self._cpu, self._wall, self._samples = cpu, now_ns, samples
        self.next_adapt = now_ns + ADAPT_EVERY_NS
        return Stats(t_us, round(overhead, 4), round(rate, 1), round(1e9 / self.period, 1))
