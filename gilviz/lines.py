"""Time per Python line: held the GIL, waited for it, ran native code, blocked.

The sampler stamps a tick's thread row with the line a stack reading found that thread on
during the tick (capture/lines.py). Those ticks are a sample of the thread's life, taken at
the stack rate whatever the thread does, so a line's time is the time of the thread's stamped
ticks on it, scaled by (the thread's whole time / its stamped ticks' time). At the tick rate
(3.14+ targets) nearly every tick is stamped and the scale is about 1; with py-spy at 5 a
second it is about 40, and the figures are estimates of that sample size (`readings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .stream import Line, ThreadTick

@dataclass
class LineFigures:
    id: int
    file: str
    line: int
    function: str
    held_s: float = 0.0
    waited_s: float = 0.0
    native_s: float = 0.0
    blocked_s: float = 0.0
    readings: int = 0
    threads: list[int] = field(default_factory=list)  # tids, most time first

    @property
    def where(self) -> str:
        return f"{self.file.rpartition('/')[2]}:{self.line}"

    def to_json(self, names: dict[int, str]) -> dict:
        return {"file": self.file, "line": self.line, "function": self.function,
                "held_s": round(self.held_s, 4), "waited_s": round(self.waited_s, 4),
                "native_s": round(self.native_s, 4), "blocked_s": round(self.blocked_s, 4),
                "readings": self.readings, "threads": [names.get(t, str(t)) for t in self.threads]}


class LineSums:
    """Running sums over ticks; `figures()` scales them. Memory: one entry per (thread, line)."""

    def __init__(self) -> None:
        self.lines: dict[int, Line] = {}
        self.life: dict[int, int] = {}  # tid -> time present (us)
        self.stamped: dict[int, int] = {}  # tid -> time of its ticks that carry a line (us)
        self.sums: dict[tuple[int, int], list[int]] = {}  # (tid, line id) -> [held, waited, native, blocked, n]

    def add_line(self, rec: Line) -> None:
        self.lines[rec.id] = rec

    def add_tick(self, dt: int, threads: Iterable[ThreadTick]) -> None:
        life, stamped, sums = self.life, self.stamped, self.sums
        for th in threads:
            tid = th.tid
            life[tid] = life.get(tid, 0) + dt
            if not th.line:
                continue
            stamped[tid] = stamped.get(tid, 0) + dt
            acc = sums.get((tid, th.line))
            if acc is None:
                acc = sums[tid, th.line] = [0, 0, 0, 0, 0]
            acc[0] += th.held
            acc[1] += th.waiting
            acc[2] += th.native
            acc[3] += th.blocked
            acc[4] += 1

    def merge(self, other: "LineSums") -> None:
        for tid, life in other.life.items():
            self.life[tid] = self.life.get(tid, 0) + life
        for tid, stamped in other.stamped.items():
            self.stamped[tid] = self.stamped.get(tid, 0) + stamped
        for key, acc in other.sums.items():
            mine = self.sums.get(key)
            if mine is None:
                self.sums[key] = list(acc)
            else:
                for i, value in enumerate(acc):
                    mine[i] += value

    def readings_per_s(self) -> float:
        """Stack readings a second per thread, over the threads that had any."""
        seconds = sum(self.life[t] for t in self.stamped) / 1e6
        return sum(a[4] for a in self.sums.values()) / seconds if seconds else 0.0

    def figures(self) -> list[LineFigures]:
        """Every line, most GIL held first."""
        out: dict[int, LineFigures] = {}
        per_thread: dict[int, dict[int, float]] = {}
        for (tid, lid), acc in self.sums.items():
            line = self.lines.get(lid)
            if line is None:
                continue
            scale = self.life[tid] / self.stamped[tid] / 1e6
            f = out.get(lid)
            if f is None:
                f = out[lid] = LineFigures(lid, line.file, line.line, line.function)
            f.held_s += acc[0] * scale
            f.waited_s += acc[1] * scale
            f.native_s += acc[2] * scale
            f.blocked_s += acc[3] * scale
            f.readings += acc[4]
            per_thread.setdefault(lid, {})[tid] = (acc[0] + acc[1] + acc[2] + acc[3]) * scale
        for lid, f in out.items():
            f.threads = sorted(per_thread[lid], key=lambda t: -per_thread[lid][t])
        return sorted(out.values(), key=lambda f: (-f.held_s, -f.waited_s, f.file, f.line))
