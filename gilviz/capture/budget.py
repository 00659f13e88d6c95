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

The budget is not the whole cost: a wake-up takes its core from whatever runs there, on a GIL-bound
workload the GIL's holder as often as not, and every thread waits for it meanwhile. Eight
threads spinning on two cores did 0.955 of their work alone with the GIL sampled at 4.5 kHz,
0.981 at 2.0 kHz (9 interleaved rounds). So unless a rate was asked, GIL sampling goes past
GIL_HZ_START only while the core the sampler runs on was otherwise idle (others busy at most
ROOM_SHARE of it): there its wake-ups take nothing from the workload. The start is a rate got:
on a busy core a wake-up may come a period late and skip its sample (two threads spinning on two
cores: 1,750 got of 2,200 asked), so more are asked (by a tenth at most a half second),
START_ASKED_MOST times as many at most.
"""

from __future__ import annotations

from typing import Callable

from ..probes.threads import SPARSENESS, read_every_table
from ..stream import Stats

GIL_HZ_FLOOR = 1000  # GIL sampling is never slowed below this (or the tick rate, if lower)...
GIL_HZ_START = 2000  # samples a second got (not asked: a wake-up a period late, its core busy, skips its sample)
START_ASKED_MOST = 2.0  # ...asking at most this many times as many to get them
GIL_HZ_MOST = 10_000  # where no rate is asked
ROOM_SHARE = 0.1  # others' share of the sampler's core under which GIL sampling may go past its start
TICK_HZ_FLOOR = 10.0  # ...nor the ticks below this
STACKS_HZ_FLOOR = 1.0  # py-spy's dumps slow to this before the ticks do
ADAPT_EVERY_NS = 500_000_000
SLOW = 0.8  # under this share of the budget, rates go back up
FAR = 2.2  # over this many times the budget, every rate slows at once, not one after the other


class Budget:
    def __init__(self, tick_ns: int, gil_hz: float, cpu_budget: float, cpu_s: Callable[[], float], start_ns: int,
                 stacks_hz: float = 0.0, others: Callable[[], float | None] | None = None):
        """cpu_s: the CPU the sampler has spent so far (its own and its helpers'), in seconds; others:
        the share of its core others kept busy since it was last asked (None: not known, so no room;
        no `others`: GIL sampling speeds up to the rate asked wherever the budget allows)."""
        self.cpu_budget = cpu_budget
        self.cpu_s = cpu_s
        self.asked_tick_ns = tick_ns
        self.tick_ns = tick_ns
        self.max_tick_ns = max(tick_ns, int(1e9 / TICK_HZ_FLOOR))
        self.asked_stacks_hz = stacks_hz
        self.stacks_share = 1.0  # of the rate asked, before the ticks' slowing
        self.min_period = int(1e9 / gil_hz)
        self.start_period = max(self.min_period, int(1e9 / GIL_HZ_START))
        self._start_range = (max(self.min_period, int(1e9 / GIL_HZ_START / START_ASKED_MOST)), self.start_period)
        self.period = self.start_period  # then up, as the budget (and the room) allows
        self.others = others
        self._others_last: float | None = None  # (an interval with no reading of the cores keeps the last)
        self.sparseness = SPARSENESS[0]  # how sparsely idle threads are read
        self.next_adapt = start_ns + ADAPT_EVERY_NS
        self._cpu, self._wall, self._samples, self._ticks, self._wake_ups = cpu_s(), start_ns, 0, 0, 0

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

    def adapt(self, now_ns: int, samples: int, t_us: int, ticks: int = 0, wake_ups: int = 0) -> Stats | None:
        """Every ADAPT_EVERY_NS: the new periods, and the figures of the last interval."""
        if now_ns < self.next_adapt:
            return None
        cpu = self.cpu_s()
        wall = (now_ns - self._wall) / 1e9
        overhead = (cpu - self._cpu) / wall
        rate = (samples - self._samples) / wall
        tick_rate = (ticks - self._ticks) / wall
        wake_rate = (wake_ups - self._wake_ups) / wall
        budget = self.cpu_budget
        others = self.others() if self.others is not None else None
        if others is None:  # (slow ticks read the cores less often than every interval)
            others = self._others_last
        self._others_last = others
        room = self.others is None or (others is not None and others <= ROOM_SHARE)
        if (not room and self.period == self.start_period and rate > 0 and self._samples > 0
                and overhead <= budget and tick_rate >= 0.9e9 / self.tick_ns):
            # the start's rate got, not asked: on a busy core some wake-ups come a period late (not
            # a sampler kept off its core altogether: its ticks are late too, and asking more is no help;
            # nor the first interval with samples: the GIL found in it)
            step = min(1.1, max(0.9, rate / GIL_HZ_START))
            shortest, longest = self._start_range
            self.start_period = self.period = min(longest, max(shortest, int(self.start_period * step)))
        fastest = self.min_period if room else self.start_period
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
                self.period = max(fastest, int(self.period / 1.2))
        if self.period < fastest:  # (its core is busy now: past the start, the samples cost the workload)
            self.period = fastest
        self._cpu, self._wall, self._samples, self._ticks, self._wake_ups = cpu, now_ns, samples, ticks, wake_ups
        self.next_adapt = now_ns + ADAPT_EVERY_NS
        sparse = self.sparseness > SPARSENESS[0]
        return Stats(t_us, round(overhead, 4), round(rate, 1), round(1e9 / self.period, 1),
                     tick_hz=round(tick_rate, 1), tick_hz_target=round(1e9 / self.tick_ns, 1),
                     stacks_hz=round(self.stacks_hz, 3), wake_hz=round(wake_rate, 1) if wake_ups else None,
                     core_others=round(others, 3) if others is not None else None,
                     idle_read_every=read_every_table(self.sparseness)[-1] if sparse else None)
