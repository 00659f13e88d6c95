"""The live view: one app for a live sampler and a recording alike.

The app is given a Source (sources.py). A thread worker runs the source and piles its
records into a Feed; a timer at FRAME_HZ takes the whole pile, adds it to the History
(model.py) and repaints what changed, so the screen can never fall behind the stream.
Figures that need sums over all threads (the table, the header, the gutters) are
recomputed FIGURES_HZ times a second.
"""

from __future__ import annotations

import os
import time
from functools import partial
from typing import Any, Callable, Iterable

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from ..errors import UserError
from ..stream import Notice
from . import catalog, theme
from ..timeline.store import History, core_share, fmt_duration, fmt_zoom
from .screens import HelpScreen, PickScreen
from ..sources import Feed, LiveSource, Source
from ..timeline.view import SORT_LABELS, Row, View, build_rows
from .widgets import CoreLanes, GilLanes, Legend, ThreadClicked, ThreadLanes, ThreadTable, TimeAxis, pct

FRAME_HZ = 30.0
FIGURES_HZ = 4.0


class SourceData(Message):
    """The feed has records; one of these in the queue is enough."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SourceData)


class SourceEnded(Message):
    def __init__(self, generation: int, error: str | None) -> None:
        super().__init__()
        self.generation = generation
        self.error = error


class TargetChecked(Message):
    def __init__(self, target: list[str], error: str | None) -> None:
        super().__init__()
        self.target = target
        self.error = error


def fit_text(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _nice_ceiling(x: float) -> float:
    if x <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(x)))
    for m in (0.1, 0.2, 0.25, 0.5, 1.0):
        if x <= m * magnitude:
            return m * magnitude
    return magnitude


class MainScreen(Screen):
    """The main screen: its widgets cover all of it, so its own background is never seen
    (BLANK saves Textual re-rendering it under every frame's changes)."""

    BLANK = True

    def on_resize(self) -> None:
        app = self.app
        if isinstance(app, GilvizApp):
            app.apply_layout()


class GilvizApp(App[int]):
    TITLE = "gilviz"
    CSS = """
    Screen { layout: vertical; background: $background; }
    #header { height: 1; padding: 0 1; background: $panel; color: $foreground; }
    #cores { height: 2; }
    #gil { height: 4; overflow-y: hidden; }
    #axis { height: 1; overflow-y: hidden; }
    #threads { height: 1fr; min-height: 2; }
    #legend { height: auto; }
    #bottom { height: 8; border-top: solid $panel; }
    #table { width: 1fr; height: 1fr; }
    #info { width: 44; height: 1fr; padding: 0 1; border-left: solid $panel; overflow-y: auto; }
    #stackline { height: 2; padding: 0 1; display: none; color: $foreground; }
    #output { height: 8; border-top: solid $panel; display: none; background: $surface; }
    .hidden { display: none; }
    """
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause"),
        Binding("left", "scroll_time(-0.25)", "Back", show=False),
        Binding("right", "scroll_time(0.25)", "Forward", show=False),
        Binding("shift+left,pageup", "scroll_time(-1)", "Page back", show=False),
        Binding("shift+right,pagedown", "scroll_time(1)", "Page forward", show=False),
        Binding("home", "go_start", "Start", show=False),
        Binding("0", "fit", "Whole run", show=False),
        Binding("plus,equals_sign", "zoom(-1)", "Zoom in", key_display="+"),
        Binding("minus,underscore", "zoom(1)", "Zoom out", key_display="-"),
        Binding("f,end", "follow", "Follow"),
        Binding("up,k", "select_move(-1)", "Previous thread", show=False),
        Binding("down,j", "select_move(1)", "Next thread", show=False),
        Binding("escape", "clear_selection", "Clear selection", show=False),
        Binding("r", "restart", "Restart"),
        Binding("n", "pick", "New target"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("g", "toggle_grouping", "Group"),
        Binding("o", "toggle_pane('output')", "Output"),
        Binding("c", "toggle_pane('cores')", "Cores", show=False),
        Binding("i", "toggle_pane('gil')", "GIL", show=False),
        Binding("d", "toggle_pane('table')", "Table", show=False),
        Binding("t", "cycle_theme", "Theme", show=False),
        Binding("ctrl+s,f8", "screenshot_svg", "Screenshot", show=False),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: Source, *, theme_name: str | None = None, frame_hz: float = FRAME_HZ,
                 figures_hz: float = FIGURES_HZ, show_ui_cost: bool = True, output_pane: bool | None = None,
                 live_options: list[str] | None = None, check_target: Callable[[list[str]], None] | None = None,
                 new_source: Callable[[list[str], str | None], Source] | None = None,
                 screenshot_dir: str | None = None, clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.process_time, max_thread_ticks: int = 20_000_000):
        super().__init__()
        for t in theme.THEMES:
            self.register_theme(t)
        self.theme = theme_name or os.environ.get("GILVIZ_THEME") or theme.DEFAULT_THEME
        self.source = source
        self.feed = Feed(self._wake)
        self.model = History(max_thread_ticks)
        self.view = View()
        self.frame_hz = frame_hz
        self.figures_hz = figures_hz
        self.show_ui_cost = show_ui_cost
        self.output_pane = output_pane
        self.live_options = list(live_options or [])
        self.check_target = check_target
        self.new_source = new_source or (lambda target, scenario: LiveSource(target, self.live_options,
                                                                              scenario=scenario))
        self.screenshot_dir = screenshot_dir
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.max_thread_ticks = max_thread_ticks
        self.rows: list[Row] = []
        self.table_rows: list[tuple] = []
        self.table_note = ""
        self.core_labels: dict[int, str] = {}
        self.gil_labels: list[str] = ["GIL held by", "held", "contended", "hand-offs"]
        self.gil_figures: dict[str, Any] | None = None
        self.gil_pid: int | None = None
        self.gutter_width = 20
        self.lane_cells = 100
        self.compact = False
        self.frames = 0  # frames painted (benchmark)
        self._generation = 0
        self._lanes_dirty = True
        self._figures_dirty = True
        self._rows_dirty = True
        self._last_figures = -1e9
        self._last_take = -1e9
        self._known_threads = 0
        self._output_seen = 0
        self._cost_samples: list[tuple[float, float]] = []
        self._ui_cost: float | None = None
        self._sizes: tuple | None = None
        self._gv_ready = False

    # ----------------------------------------------------------------- layout
    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {**theme.DARK_VARS}

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield CoreLanes(id="cores")
        yield GilLanes(id="gil")
        yield TimeAxis(id="axis")
        yield ThreadLanes(id="threads")
        yield Legend(id="legend")
        with Horizontal(id="bottom"):
            yield ThreadTable(id="table")
            yield Static(id="info")
        yield Static(id="stackline")
        log = Log(id="output", max_lines=5000, auto_scroll=True)
        log.can_focus = False
        yield log
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._lanes = [self.query_one(CoreLanes), self.query_one(GilLanes), self.query_one(TimeAxis),
                       self.query_one(ThreadLanes)]
        self._others = [self.query_one(ThreadTable), self.query_one(Legend)]
        self._gv_ready = True
        if self.output_pane is None:
            self.output_pane = self.size.height >= 40
        self.view.panes["output"] = bool(self.output_pane)
        self._apply_layout()
        self._start(self.source)
        self.set_interval(1.0 / self.frame_hz, self._frame)

    def on_resize(self) -> None:
        self._apply_layout()

    def apply_layout(self) -> None:
        if self._gv_ready:
            self._apply_layout()
            self.refresh_now()

    def _apply_layout(self) -> None:
        if not self._gv_ready:
            return
        width, height = self.size
        panes = self.view.panes
        self.gutter_width = 14 if width < 100 else 20
        self.lane_cells = max(1, width - self.gutter_width - 2)
        self.compact = height < 32
        ncores = max(1, len(self.model.cores) or (self.model.header.cpus or 2))
        cores_h = min(ncores, max(2, height // 6))
        gil_h = 2 if self.compact else 4
        bottom_h = max(5, min(16, height // 4))
        output_h = max(3, min(12, height // 5))
        wide = width >= 100
        sizes = (width, height, ncores, tuple(sorted(panes.items())), wide, self.view.selected is not None)
        if sizes == self._sizes:
            return
        self._sizes = sizes
        cores = self.query_one("#cores")
        cores.styles.height = cores_h
        cores.display = panes["cores"]
        gil = self.query_one("#gil")
        gil.styles.height = gil_h
        gil.display = panes["gil"]
        bottom = self.query_one("#bottom")
        bottom.styles.height = bottom_h
        bottom.display = panes["table"]
        info = self.query_one("#info")
        info.display = wide
        info.styles.width = max(36, min(60, width * 3 // 10))
        stackline = self.query_one("#stackline")
        stackline.display = (not wide) and self.view.selected is not None and panes["table"]
        output = self.query_one("#output")
        output.styles.height = output_h
        output.display = panes["output"]
        self._lanes_dirty = self._figures_dirty = True
        for painter in self.query("Painter"):
            painter._rows.clear()  # type: ignore[attr-defined]

    # ----------------------------------------------------------------- the source
    def _wake(self) -> None:
        self.post_message(SourceData())

    def _start(self, source: Source) -> None:
        self.source = source
        self._generation = self.feed.next_generation()
        self._read_source(source, self._generation)

    @work(thread=True, exclusive=True, group="source", exit_on_error=False)
    def _read_source(self, source: Source, generation: int) -> None:
        error = None
        try:
            source.run(partial(self.feed.push, generation))
        except UserError as e:
            error = str(e)
        except Exception as e:  # a bug or an unreadable stream: say so on screen, keep the data
            error = f"{type(e).__name__}: {e}"
        self.post_message(SourceEnded(generation, error))

    def on_source_data(self, message: SourceData) -> None:
        # the frame timer takes the pile; take it here only if the timer is late
        if self.clock() - self._last_take >= 1.5 / self.frame_hz:
            self._take()

    def on_source_ended(self, message: SourceEnded) -> None:
        if message.generation != self._generation:
            return
        self._take()
        if message.error and self.model.end is None:
            self.model.error = message.error
        elif self.model.end is None:
            self.model.error = ("the recording stops here (truncated: it has no end record)"
                                if not self.source.capabilities.live else "the sampler stopped without saying why")
        self._lanes_dirty = self._figures_dirty = True
        self._last_figures = -1e9
        self._frame()

    def _take(self) -> None:
        self._last_take = self.clock()
        items = self.feed.take()
        if not items:
            return
        model = self.model
        out = None
        for rec in items:
            model.add(rec)
            if isinstance(rec, Notice):
                self.notify(rec.text, severity="warning", timeout=10)
        if model.output_seen > self._output_seen:
            new = model.output_seen - self._output_seen
            chunks = model.output[-new:] if new <= len(model.output) else model.output
            out = "".join(c.data for c in chunks)
            self._output_seen = model.output_seen
        if out:
            self.query_one("#output", Log).write(out)
        if len(model.order) != self._known_threads:
            self._known_threads = len(model.order)
            self._rows_dirty = True
        if self.view.following or not self.model.finished(self.view.zoom, (self.view.right_edge(model) - 1) // self.view.zoom):
            self._lanes_dirty = True
        self._figures_dirty = True

    # ----------------------------------------------------------------- painting
    def _frame(self) -> None:
        self._take()
        now = self.clock()
        if self.show_ui_cost:
            self._measure_cost(now)
        if self._sizes is not None and (self._sizes[2] != max(1, len(self.model.cores) or 2)
                                        or self._sizes[:2] != tuple(self.size)):
            self._apply_layout()
        if self._figures_dirty and (now - self._last_figures >= 1.0 / self.figures_hz):
            self._last_figures = now
            self._figures_dirty = False
            self.update_figures()
            self._lanes_dirty = True
            for painter in self._others:
                painter.refresh_lanes()  # type: ignore[attr-defined]
        if self._lanes_dirty:
            self._lanes_dirty = False
            self.view.clamp(self.model, None)
            for painter in self._lanes:
                if painter.display:
                    painter.refresh_lanes()  # type: ignore[attr-defined]
            self.frames += 1

    def _measure_cost(self, now: float) -> None:
        samples = self._cost_samples
        samples.append((now, self.cpu_clock()))
        while len(samples) > 2 and now - samples[0][0] > 2.0:
            samples.pop(0)
        if now - samples[0][0] >= 0.5:
            self._ui_cost = (samples[-1][1] - samples[0][1]) / (now - samples[0][0])

    def cells_width(self) -> int:
        return self.lane_cells

    @property
    def selected_serial(self) -> int:
        tid = self.view.selected
        s = self.model.threads.get(tid) if tid is not None else None
        return s.serial if s is not None else -1

    def empty_message(self) -> str:
        if self.model.error:
            return self.model.error
        if self.model.ended:
            return "the target ended before any thread was sampled"
        return f"starting {self.source.label}…"

    def update_figures(self) -> None:
        model, view = self.model, self.view
        t0, t1 = view.time_window(model, self.cells_width())
        stats = {s.tid: model.thread_stats(s, t0, t1) for s in model.order}
        self.rows = build_rows(model, stats, view)
        self._rows_dirty = False
        at = t1
        self.table_rows = [(r.series, stats[r.series.tid], model.line_at(r.series.tid, at))
                           for r in self.rows if r.kind == "thread" and r.series is not None]
        span = max(0, t1 - t0)
        self.table_note = f"{t0 / 1e6:.2f}–{t1 / 1e6:.2f} s" if span else ""
        # the GIL lanes follow the selected thread's process, else the target's
        pid = None
        sel = model.threads.get(view.selected) if view.selected is not None else None
        if sel is not None and sel.pid in model.gils:
            pid = sel.pid
        elif model.root_pid in model.gils or model.root_pid in model.processes:
            pid = model.root_pid
        elif model.gils:
            pid = next(iter(model.gils))
        self.gil_pid = pid
        figures = model.gil_stats(pid, t0, t1) if pid is not None else None
        short = self.gutter_width < 18
        if figures:
            gs = model.gils[pid]
            c0, c1 = view.window(model, self.cells_width())
            rates = [c[4] for c in model.gil_cells(gs, view.zoom, c0, c1)]
            figures["handoff_scale"] = _nice_ceiling(max(rates, default=0.0))
            self.gil_labels = [
                "GIL held by" if not short else "GIL holder",
                f"held {pct(figures['held'])}",
                (f"contended {pct(figures['contended'])}" if not short else f"contend {pct(figures['contended'])}"),
                f"hand-offs {figures['handoffs_per_s']:.0f}/s" if not short else f"{figures['handoffs_per_s']:.0f} swaps/s",
            ]
        else:
            self.gil_labels = ["GIL", "", "", ""]
        if len(model.processes) > 1 and pid is not None and not short:
            self.gil_labels[0] = f"GIL {pid}"
        self.gil_figures = figures
        self.core_labels = {}
        for core in model.cores:
            target, other = core_share(model, core, t0, t1)
            label = f"cpu{core.cpu}"
            room = self.gutter_width - len(label) - 1
            figure = pct(target)
            if room >= 10 and other >= 0.01:
                figure += f" +{pct(other)}"
            self.core_labels[core.cpu] = label + " " * max(1, room - len(figure)) + figure
        self._update_header()
        self._update_info()
        self._apply_layout()

    def _update_header(self) -> None:
        model, view = self.model, self.view
        h = model.header
        head = Text()
        if model.ended:
            how = model.describe_end() or "ended"
            head.append("■ ENDED", style="bold reverse" if model.error else "bold")
            head.append(f" ({how})")
        elif view.paused:
            head.append("❚❚ PAUSED", style="bold reverse")
        elif not self.source.capabilities.live:
            speed = getattr(self.source, "speed", 1.0)
            head.append(f"▶ REPLAY ×{speed:g}" if speed else "▶ REPLAY", style="bold")
        else:
            head.append("● LIVE", style="bold")
        if model.times:
            head.append(f" {model.t_last / 1e6:.1f} s", style="bold")
        target = h.command or self.source.label
        if not self.source.capabilities.live:
            target = f"{self.source.label}: {target}"
        root = model.processes.get(model.root_pid) if model.root_pid is not None else None
        version = (root.python if root else None) or h.python_version or ""
        status = root.gil if root else None
        gil = {"located": "GIL on", "no GIL": "GIL off (free-threaded)", "not located": "GIL not located"}.get(
            status or "", "GIL off" if h.gil_enabled is False else "")
        switch = root.switch_interval_us if root else None
        found_by = root.gil_found_by if root and status == "located" else None
        rate = model.tick_rate() if model.times else None
        gil_hz = model.stats.gil_hz if model.stats else None
        sampler = model.stats.overhead if model.stats else None
        ui = self._ui_cost if self.show_ui_cost else None

        def build(level: int) -> list[str]:
            parts = [target if level < 2 else fit_text(target, 32 if level == 2 else 24)]
            gil_text = gil + (f" ({found_by})" if found_by and level < 2 else "")
            interp = " · ".join(x for x in (
                (f"CPython {version}" if level < 3 else version) if version else "",
                gil_text + (f", switch {fmt_duration(switch)}" if level < 3 else f" {fmt_duration(switch)}")
                if gil and switch else gil_text) if x)
            parts.append(interp)
            if rate is not None:
                tick = f"{rate:.0f} ticks/s" if level < 3 else f"{rate:.0f}/s"
                if gil_hz and level < 1:
                    tick += f", GIL {gil_hz / 1000:.1f}k/s"
                parts.append(tick)
            cost = []
            if sampler is not None:
                cost.append(f"sampler {sampler:.0%}" if level < 3 else f"{sampler:.0%}")
            if ui is not None:
                cost.append(f"view {ui:.0%}" if level < 3 else f"{ui:.0%}")
            if cost:
                parts.append(("CPU: " + ", ".join(cost)) if level < 3 else ("CPU " + " + ".join(cost)))
            parts.append(fmt_zoom(view.zoom))
            return [p for p in parts if p]

        width = self.size.width - 2
        room = width if width >= 118 else 2 * width
        for level in range(4):
            text = head.copy()
            text.append(" │ " + " │ ".join(build(level)))
            if text.cell_len <= room:
                break
        header = self.query_one("#header", Static)
        lines = 1 if text.cell_len <= width else 2
        if header.styles.height is None or header.styles.height.value != lines:
            header.styles.height = lines
        header.update(text, layout=False)

    def _update_info(self) -> None:
        model, view = self.model, self.view
        text = Text()
        sel = model.threads.get(view.selected) if view.selected is not None else None
        _, t1 = view.time_window(model, self.cells_width())
        if sel is not None:
            text.append(f"{sel.letter} ", style="reverse bold")
            text.append(f"{sel.name}", style="bold")
            text.append(f"  tid {sel.tid}" + (f" · pid {sel.pid}" if sel.pid else "") + "\n")
            at = view.selected_t if view.selected_t is not None else t1
            found = model.stack_at(sel.tid, at)
            if found:
                t, entry = found
                flags = []
                if entry.owns_gil:
                    flags.append("held the GIL")
                if not entry.active:
                    flags.append("idle")
                text.append(f"stack at {t / 1e6:.2f} s" + (f" ({', '.join(flags)})" if flags else "") + ":\n",
                            style="italic")
                for frame in entry.frames or [entry.line]:
                    text.append(f"  {frame}\n")
            else:
                text.append("no stack yet (py-spy reads stacks about once a second)\n", style="italic")
            line = " ← ".join(found[1].frames[:4]) if found else ""
            self.query_one("#stackline", Static).update(Text(f"{sel.letter} {sel.name}: {line or 'no stack yet'}"),
                                                        layout=False)
        else:
            scenario = catalog.find(model.header.scenario or self.source.scenario)
            if scenario is not None:
                text.append(f"{scenario.name}: ", style="bold")
                text.append(catalog.text_of(scenario, "summary") + "\n")
                look = catalog.text_of(scenario, "look_for")
                if look:
                    text.append("Look for: ", style="bold")
                    text.append(look + "\n")
            text.append("Click a thread, or ↑ ↓, to see its stack.\n", style="italic")
        t0, t1 = view.time_window(model, self.cells_width())
        if t1 > t0:
            text.append(f"\nFigures below: {t0 / 1e6:.2f}–{t1 / 1e6:.2f} s, the time shown.\n", style="italic")
        progress = model.progress
        if progress is not None and progress.done is not None:
            first = model.first_progress or progress
            span = (progress.t - first.t) / 1e6
            rate = (progress.done - (first.done or 0)) / span if span > 0 else 0.0
            text.append(f"\nwork: {progress.done} {progress.unit or ''}", style="bold")
            if rate:
                text.append(f" ({rate:.0f}/s)")
            text.append("\n")
        if model.results:
            text.append("result: " + ", ".join(f"{k} {v}" for k, v in model.results.items()) + "\n")
        how = model.describe_end()
        if how:
            text.append(f"\nThe run ended: {how}.", style="bold")
            if model.end and model.end.sampler_wall_s:
                text.append(f" {model.end.sampler_wall_s:.1f} s sampled.")
            text.append(" Scroll back with ← → and zoom with + -.\n")
        elif view.paused:
            text.append("\nPaused: ← → scroll, space or f resumes.\n")
        self.query_one("#info", Static).update(text, layout=False)

    def refresh_now(self) -> None:
        """Recomputes figures and repaints at once (after a key)."""
        self._figures_dirty = True
        self._last_figures = -1e9
        self._lanes_dirty = True
        self._frame()

    # ----------------------------------------------------------------- actions
    def action_toggle_pause(self) -> None:
        if self.view.paused:
            self.view.follow()
            self.source.set_paused(False)
        else:
            self.view.pause(self.model)
            self.source.set_paused(True)
        self.refresh_now()

    def action_scroll_time(self, screens: float) -> None:
        cells = self.cells_width()
        if self.view.following:
            self.source.set_paused(True)
        self.view.scroll(self.model, int(round(screens * cells)) or (1 if screens > 0 else -1))
        self.refresh_now()

    def action_go_start(self) -> None:
        self.source.set_paused(True)
        self.view.go_start(self.model, self.cells_width())
        self.refresh_now()

    def action_fit(self) -> None:
        """The finest zoom at which the whole history fits the lanes."""
        if self.view.fit(self.model, self.cells_width()):
            self.refresh_now()

    def action_follow(self) -> None:
        self.view.follow()
        self.source.set_paused(False)
        self.refresh_now()

    def action_zoom(self, step: int) -> None:
        if self.view.zoom_by(self.model, step, self.cells_width()):
            self.refresh_now()
        else:
            self.notify("zoom is already at its " + ("finest (1 ms per cell)" if step < 0 else "widest (1 s per cell)"),
                        timeout=2)

    def action_select_move(self, step: int) -> None:
        tids = [r[0].tid for r in self.table_rows]
        if not tids:
            return
        if self.view.selected in tids:
            i = max(0, min(len(tids) - 1, tids.index(self.view.selected) + step))
        else:
            i = 0 if step > 0 else len(tids) - 1
        self.select(tids[i], None)

    def action_clear_selection(self) -> None:
        if self.view.selected is not None:
            self.select(None, None)

    def on_thread_clicked(self, message: ThreadClicked) -> None:
        if message.tid == self.view.selected and message.t is None:
            self.select(None, None)
        else:
            self.select(message.tid, message.t)

    def select(self, tid: int | None, t: int | None) -> None:
        self.view.selected = tid
        self.view.selected_t = t
        self.refresh_now()
        if tid is not None:
            lanes = self.query_one(ThreadLanes)
            for i, row in enumerate(self.rows):
                if row.series is not None and row.series.tid == tid:
                    lanes.scroll_to_row(i)
                    break
            table = self.query_one(ThreadTable)
            for i, row in enumerate(self.table_rows):
                if row[0].tid == tid:
                    table.scroll_to_row(i)
                    break

    def action_cycle_sort(self) -> None:
        sort = self.view.cycle_sort()
        self.notify(f"threads sorted by {SORT_LABELS[sort]}", timeout=2)
        self.refresh_now()

    def action_toggle_grouping(self) -> None:
        self.view.grouped = not self.view.grouped
        self.notify("thread lanes grouped by process" if self.view.grouped else "thread lanes flat", timeout=2)
        self.refresh_now()

    def action_toggle_pane(self, pane: str) -> None:
        self.view.panes[pane] = not self.view.panes[pane]
        self._apply_layout()
        self.refresh_now()

    def action_cycle_theme(self) -> None:
        names = theme.THEME_NAMES
        i = names.index(self.theme) + 1 if self.theme in names else 0
        self.theme = names[i % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_screenshot_svg(self) -> None:
        path = self.save_screenshot(path=self.screenshot_dir or os.getcwd())
        self.notify(f"screenshot saved to {path}", timeout=4)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(HelpScreen())

    def action_restart(self) -> None:
        self.restart(self.source.fresh())
        what = f"restarted {self.source.label}" if self.source.capabilities.live else "replay restarted"
        self.notify(what, timeout=2)

    def restart(self, source: Source) -> None:
        self.source.stop()
        self.source.set_paused(False)
        self.model = History(self.max_thread_ticks)
        selected_keep = None
        self.view.follow()
        self.view.selected = selected_keep
        self.view.selected_t = None
        self.rows, self.table_rows = [], []
        self._known_threads = 0
        self._output_seen = 0
        self.query_one("#output", Log).clear()
        for painter in self.query("Painter"):
            painter._rows.clear()  # type: ignore[attr-defined]
        self._start(source)
        self.refresh_now()

    def action_pick(self) -> None:
        current = self.model.header.scenario or self.source.scenario
        self.push_screen(PickScreen(current), self._picked)

    def _picked(self, target: list[str] | None) -> None:
        if not target:
            return
        self.notify(f"starting {' '.join(target)}…", timeout=2)
        self._check_target(target)

    @work(thread=True, exclusive=True, group="check", exit_on_error=False)
    def _check_target(self, target: list[str]) -> None:
        error = None
        try:
            if self.check_target is not None:
                self.check_target(target)
        except UserError as e:
            error = str(e)
        self.post_message(TargetChecked(target, error))

    def on_target_checked(self, message: TargetChecked) -> None:
        if message.error:
            self.notify(message.error, severity="error", timeout=8)
            return
        target = message.target
        scenario = target[0] if target and catalog.find(target[0]) is not None else None
        self.restart(self.new_source(target, scenario))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume", "Freeze the timeline (a live target keeps being sampled)",
                            self.action_toggle_pause)
        yield SystemCommand("Follow", "Jump to the newest samples and keep up", self.action_follow)
        yield SystemCommand("Zoom in", "Fewer microseconds per cell", partial(self.action_zoom, -1))
        yield SystemCommand("Zoom out", "More microseconds per cell", partial(self.action_zoom, 1))
        yield SystemCommand("Go to start", "Scroll back to the start of the run", self.action_go_start)
        yield SystemCommand("Whole run", "Zoom out until the whole run fits", self.action_fit)
        yield SystemCommand("Restart", "Restart the workload (a replay starts over)", self.action_restart)
        yield SystemCommand("Pick scenario or target", "Run another scenario, script, module or PID",
                            self.action_pick)
        yield SystemCommand("Sort threads", "Start order, name, CPU time, GIL wait, state", self.action_cycle_sort)
        yield SystemCommand("Group / flat", "Thread lanes grouped by process, or flat", self.action_toggle_grouping)
        for pane in ("output", "cores", "gil", "table"):
            yield SystemCommand(f"Show / hide {pane}", f"Toggle the {pane} pane",
                                partial(self.action_toggle_pane, pane))
        yield SystemCommand("Cycle theme", "Dark, light, high contrast", self.action_cycle_theme)
        yield SystemCommand("Save SVG screenshot", "Write the screen to an SVG file", self.action_screenshot_svg)
        yield SystemCommand("Help", "Keys, states and lanes", self.action_help)

    async def action_quit(self) -> None:
        self.source.stop()
        self.exit(0)

    def on_unmount(self) -> None:
        self.source.stop()


def make_app(source: Source, **options: Any) -> GilvizApp:
    """The one way to build the app, for the command line, the tests and the benchmark."""
    return GilvizApp(source, **options)
