"""What the screen shows of the history: zoom, the window in time, selection, order.

Plain Python (no Textual), so that the navigation rules are testable without an app.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class View:
    zoom_index: int = ZOOMS.index(DEFAULT_ZOOM)
    end_t: int | None = None  # right edge in stream time (exclusive); None: follow the newest tick
    paused: bool = False
    selected: int | None = None  # tid
    selected_t: int | None = None  # where it was clicked (for its stack)
    grouped: bool = True
    sort: str = "started"
    panes: dict = field(default_factory=lambda: {"cores": True, "gil": True, "table": True, "output": False})

    @property
    def zoom(self) -> int:
        return ZOOMS[self.zoom_index]

    @property
    def following(self) -> bool:
        return self.end_t is None

    def right_edge(self, model: History) -> int:
        return model.t_last if self.end_t is None else self.end_t

    def window(self, model: History, cells: int) -> tuple[int, int]:
        """First and last cell shown by a lane `cells` wide."""
        c1 = (max(1, self.right_edge(model)) - 1) // self.zoom
        return c1 - max(1, cells) + 1, c1

    def time_window(self, model: History, cells: int) -> tuple[int, int]:
        c0, c1 = self.window(model, cells)
        return max(c0 * self.zoom, model.t_start), min((c1 + 1) * self.zoom, max(model.t_last, 1))

    def zoom_by(self, model: History, step: int, cells: int) -> bool:
        new = max(0, min(len(ZOOMS) - 1, self.zoom_index + step))
        if new == self.zoom_index:
            return False
        if self.end_t is not None:  # keep the middle of the window where it is
            c0, c1 = self.window(model, cells)
            middle = (c0 + c1 + 1) * self.zoom // 2
            self.zoom_index = new
            self.end_t = middle + cells * self.zoom // 2
            self.clamp(model, cells)
        else:
            self.zoom_index = new
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
        self.end_t = max(low, min(self.end_t, model.t_last))

    def go_start(self, model: History, cells: int) -> None:
        self.paused = True
        self.end_t = model.t_start + cells * self.zoom
        self.clamp(model, cells)

    def fit(self, model: History, cells: int) -> bool:
        """Zooms so that the whole history fits in `cells`; keeps following if it was."""
        span = max(1, model.t_last - model.t_start)
        index = next((i for i, z in enumerate(ZOOMS) if z * (cells - 1) >= span), len(ZOOMS) - 1)
        changed = index != self.zoom_index or self.end_t not in (None, model.t_last)
        self.zoom_index = index
        if self.end_t is not None:
            self.end_t = model.t_last
        return changed

    def follow(self) -> None:
        self.end_t = None
        self.paused = False

    def pause(self, model: History) -> None:
        self.paused = True
        self.end_t = model.t_last

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
