"""What the screen shows of the history: zoom, the window in time, selection, order.

Plain Python (no Textual), so that the navigation rules are testable without an app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..stream import State
from .store import DEFAULT_ZOOM, ZOOMS, History, ThreadSeries, ThreadStats

SORTS = ("started", "name", "cpu", "waiting", "state")
SORT_LABELS = {"started": "start order", "name": "name", "cpu": "CPU time", "waiting": "GIL wait", "state": "state"}
# sorting by state: the busiest first, a lock before I/O before sleep, the gone last
_STATE_ORDER = {s.key: i for i, s in enumerate((State.RUNNING, State.NATIVE, State.WAITING, State.RUNNABLE,
                                                State.LOCK, State.IO, State.SLEEP, State.OTHER))} | {"gone": 9}


@dataclass
class Row:
    """One line of the thread lanes: a process heading (grouped view) or a thread."""

    kind: str  # "proc", "gil" (a subinterpreter's own GIL) or "thread"
    pid: int | None
    series: ThreadSeries | None = None
    interp: int = 0


MAX_FIT_ZOOM = 60_000_000  # zoom-to-fit goes past the keys' widest zoom, to a minute a cell


def _round_up_2(x: int) -> int:
    """x rounded up to two significant digits (16_321 -> 17_000), so a fitted zoom reads cleanly."""
    magnitude = 10 ** max(0, len(str(x)) - 2)
    return -(-x // magnitude) * magnitude


@dataclass
class View:
    zoom: int = DEFAULT_ZOOM  # microseconds per cell
    end_t: int | None = None  # right edge in stream time (exclusive); None: follow the newest tick
    paused: bool = False
    selected: int | None = None  # tid
    selected_t: int | None = None  # where it was clicked (for its stack)
    selected_line: int | None = None  # a line picked in the lines pane: the lanes show where threads were on it
    grouped: bool = True
    sort: str = "started"
    panes: dict = field(default_factory=lambda: {"cores": True, "gil": True, "table": True, "output": False,
                                                 "lines": False})
    # views that share one time axis share this View, and follow the newest of their timelines
    follow_edge: Callable[[], int] | None = field(default=None, repr=False, compare=False)

    @property
    def following(self) -> bool:
        return self.end_t is None

    def newest(self, model: History) -> int:
        return self.follow_edge() if self.follow_edge is not None else model.t_last

    def right_edge(self, model: History) -> int:
        return self.newest(model) if self.end_t is None else self.end_t

    def window(self, model: History, cells: int) -> tuple[int, int]:
        """First and last cell shown by a lane `cells` wide; time 0 at the left until there is more."""
        cells = max(1, cells)
        c1 = (max(1, self.right_edge(model)) - 1) // self.zoom
        c0 = c1 - cells + 1
        if c0 < 0:
            return 0, cells - 1
        return c0, c1

    def time_window(self, model: History, cells: int) -> tuple[int, int]:
        c0, c1 = self.window(model, cells)
        return max(c0 * self.zoom, model.t_start), min((c1 + 1) * self.zoom, max(model.t_last, 1))

    def zoom_by(self, model: History, step: int, cells: int) -> bool:
        """To the next of the keys' zooms, finer (step < 0) or wider."""
        if step < 0:
            new = next((z for z in reversed(ZOOMS) if z < self.zoom), self.zoom)
        else:
            new = next((z for z in ZOOMS if z > self.zoom), self.zoom)
        if new == self.zoom:
            return False
        if self.end_t is not None:  # keep the middle of the window where it is
            c0, c1 = self.window(model, cells)
            middle = (c0 + c1 + 1) * self.zoom // 2
            self.zoom = new
            self.end_t = middle + cells * self.zoom // 2
            self.clamp(model, cells)
        else:
            self.zoom = new
        return True

    def scroll(self, model: History, cells: int) -> None:
        """Moves the window by `cells` (negative: back in time); leaves follow mode."""
        edge = self.right_edge(model)
        self.end_t = edge + cells * self.zoom
        self.paused = True
        self.clamp(model, None)

    def clamp(self, model: History, width: int | None) -> None:
        if self.end_t is None:
            return
        low = model.t_start + self.zoom
        self.end_t = max(low, min(self.end_t, self.newest(model)))

    def go_start(self, model: History, cells: int) -> None:
        self.paused = True
        self.end_t = model.t_start + cells * self.zoom
        self.clamp(model, cells)

    def fit(self, model: History, cells: int) -> bool:
        """Zooms so that the whole run, from time 0, fills `cells`; keeps following if it was."""
        span = max(1, self.newest(model))
        zoom = min(MAX_FIT_ZOOM, max(ZOOMS[0], _round_up_2(-(-span // max(1, cells)))))
        changed = zoom != self.zoom or self.end_t not in (None, self.newest(model))
        self.zoom = zoom
        if self.end_t is not None:
            self.end_t = self.newest(model)
        return changed

    def follow(self) -> None:
        self.end_t = None
        self.paused = False

    def pause(self, model: History) -> None:
        self.paused = True
        self.end_t = self.newest(model)

    def cycle_sort(self) -> str:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        return self.sort


def order_threads(threads: list[ThreadSeries], stats: dict[int, ThreadStats], sort: str) -> list[ThreadSeries]:
    if sort == "name":
        return sorted(threads, key=lambda s: (s.name.lower(), s.serial))
    if sort == "cpu":
        return sorted(threads, key=lambda s: (-(stats[s.tid].cpu_s if s.tid in stats else 0.0), s.serial))
    if sort == "waiting":
        return sorted(threads, key=lambda s: (-(stats[s.tid].waiting if s.tid in stats else 0.0), s.serial))
    if sort == "state":
        return sorted(threads, key=lambda s: (_STATE_ORDER.get(stats[s.tid].state if s.tid in stats else "gone", 8),
                                              s.serial))
    return sorted(threads, key=lambda s: s.serial)


def build_rows(model: History, stats: dict[int, ThreadStats], view: View) -> list[Row]:
    threads = model.order
    if not view.grouped:
        return [Row("thread", s.pid, s) for s in order_threads(threads, stats, view.sort)]
    pids: list[int | None] = []
    root = model.root_pid
    if root is not None:
        pids.append(root)
    for pid in model.processes:
        if pid not in pids:
            pids.append(pid)
    for s in threads:
        if s.pid not in pids:
            pids.append(s.pid)
    rows: list[Row] = []
    for pid in pids:
        mine = [s for s in threads if s.pid == pid]
        if not mine and pid not in model.processes:
            continue
        rows.append(Row("proc", pid))
        rows.extend(Row("gil", pid, interp=interp) for p, interp in sorted(model.interp_gils) if p == pid)
        rows.extend(Row("thread", pid, s) for s in order_threads(mine, stats, view.sort))
    return rows
