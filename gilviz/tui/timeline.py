"""One run on screen: a timeline view that owns its source, its timeline and its view state.

A worker thread runs the source and piles its records into a Feed; a timer at FRAME_HZ takes
the whole pile, adds it to the History (gilviz/timeline/store.py) and repaints what changed,
so the screen can never fall behind the stream. What sums over all threads (the table, the
header, the gutters) is recomputed FIGURES_HZ times a second by the presenters
(gilviz/timeline/present.py). The painters inside draw from this view, never from the app,
so several views can be mounted on one screen.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Digits, Log, Static

from ..errors import UserError
from ..sources import SPEEDS, Feed, Source
from ..stream import Notice
from ..timeline import present
from ..timeline.store import DEFAULT_ZOOM, MAX_THREAD_TICKS, History
from ..timeline.view import Row, View
from . import catalog
from .widgets import CoreLanes, GilLanes, Legend, LinesPane, ThreadLanes, ThreadTable, TimeAxis

FRAME_HZ = 30.0
FIGURES_HZ = 4.0
# The output pane is written at most this often (and at once when the run ends): each write lays
# the whole screen out again (about 8 ms at 200x60), and a workload printing 20 lines a second
# cost the view 13 % of a core more, 33.5 % against 20.9 at 64 threads.
OUTPUT_EVERY_S = 0.5


class SourceData(Message):
    """The feed has records; one of these in the queue is enough."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SourceData)


class RunEnded(Message):
    """A timeline view's source has ended (the app of a comparison then starts the next run)."""

    def __init__(self, timeline: "TimelineView") -> None:
        super().__init__()
        self.timeline = timeline


class SourceEnded(Message):
    def __init__(self, generation: int, error: str | None) -> None:
        super().__init__()
        self.generation = generation
        self.error = error


def as_text(spans: present.Spans) -> Text:
    text = Text()
    for chunk, style in spans:
        text.append(chunk, style=style or None)
    return text


class TimelineView(Vertical):
    """A run's header, cores, GIL, time axis, thread lanes, legend, table, explanation and output."""

    def __init__(self, source: Source, *, view: View | None = None, frame_hz: float = FRAME_HZ,
                 figures_hz: float = FIGURES_HZ, show_ui_cost: bool = True, output_pane: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, cpu_clock: Callable[[], float] = time.process_time,
                 max_thread_ticks: int = MAX_THREAD_TICKS, fit_when_loaded: bool = False, autostart: bool = True,
                 tap: Callable[[Any], None] | None = None, waiting_for: str = "", id: str | None = None,
                 own_frames: bool = True, output_every_s: float = OUTPUT_EVERY_S):
        """autostart: start the source once mounted, else when start() is called; tap: called with
        every record taken (a comparison records both runs into one file); waiting_for: what the
        lanes say before the source starts; own_frames: paint on a timer of its own, else when
        frame() is called (two runs on one time axis move in the same frame); output_every_s: how
        often the output pane may be written (0 for frames drawn for export: what a frame shows
        must not depend on how fast it was drawn)."""
        super().__init__(id=id)
        self.source = source
        self.feed = Feed(self._wake)
        self.model = History(max_thread_ticks)
        self.view = view or View()
        self.frame_hz = frame_hz
        self.own_frames = own_frames
        self.figures_hz = figures_hz
        self.show_ui_cost = show_ui_cost
        self.output_pane = output_pane
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.output_every_s = output_every_s
        self.max_thread_ticks = max_thread_ticks
        self.fit_when_loaded = fit_when_loaded  # a recording loaded at once opens on the whole run
        self.loop = False  # a replay that ends starts over
        self.autostart = autostart
        self.tap = tap
        self.waiting_for = waiting_for
        self.started = False
        self._drawn_window: tuple[int, int] | None = None
        self.in_comparison = False  # one of two runs on the screen: no legend of its own
        self.presenter = False  # for a room: the point as a caption, the GIL, the threads, a big legend
        self._show_up_to: int | None = None  # a step or a jump waits for its ticks: where to show them
        self.figures = present.Figures()
        self.outcome = present.Outcome()
        self.gutter_width = 20
        self.lane_cells = 100
        self.compact = False
        self.frames = 0  # frames painted (benchmark)
        self._generation = 0
        self._lanes_dirty = True
        self._figures_dirty = True
        self._last_figures = -1e9
        self._last_take = -1e9
        self._known_threads = 0
        self._output_seen = 0
        self._output_written = -1e9  # when the output pane was last written (clock s)
        self._cost_samples: list[tuple[float, float]] = []
        self._ui_cost: float | None = None
        self._sizes: tuple | None = None
        self._ready = False
        self.shares_screen = False  # beside another view: lay out by its own size, not the screen's
        self._outcome_shape: tuple[int, int] | None = None

    # what the painters read -------------------------------------------------------------
    @property
    def rows(self) -> list[Row]:
        return self.figures.rows

    @property
    def table_rows(self) -> list[tuple]:
        return self.figures.table_rows

    @property
    def table_note(self) -> str:
        return self.figures.table_note

    @property
    def gil_pid(self) -> int | None:
        return self.figures.gil_pid

    @property
    def gil_labels(self) -> list[str]:
        return self.figures.gil_labels

    @property
    def gil_figures(self) -> dict[str, Any] | None:
        return self.figures.gil_figures

    @property
    def core_labels(self) -> dict[int, str]:
        return self.figures.core_labels

    @property
    def selected_serial(self) -> int:
        tid = self.view.selected
        s = self.model.threads.get(tid) if tid is not None else None
        return s.serial if s is not None else -1

    @property
    def source_facts(self) -> present.SourceFacts:
        return present.SourceFacts(self.source.label, self.source.capabilities.live,
                                   getattr(self.source, "speed", 1.0), self.source.scenario, self.loop)

    def cells_width(self) -> int:
        return self.lane_cells

    def empty_message(self) -> str:
        if not self.started and self.waiting_for:
            return self.waiting_for
        return present.empty_message(self.model, self.source_facts)

    # ----------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="caption")
        yield Static(id="outcome")
        yield Digits(id="big")
        yield CoreLanes(id="cores")
        yield GilLanes(id="gil")
        yield TimeAxis(id="axis")
        yield ThreadLanes(id="threads")
        yield Legend(id="legend")
        with Horizontal(id="bottom"):
            yield ThreadTable(id="table")
            yield Static(id="info")
        yield Static(id="stackline")
        yield LinesPane(id="lines")
        log = Log(id="output", max_lines=5000, auto_scroll=True)
        log.can_focus = False
        yield log

    def on_mount(self) -> None:
        self._lanes = [self.query_one(CoreLanes), self.query_one(GilLanes), self.query_one(TimeAxis),
                       self.query_one(ThreadLanes)]
        self._others = [self.query_one(ThreadTable), self.query_one(Legend)]
        self._ready = True
        if self.output_pane is None:
            self.output_pane = self.app.size.height >= 40
        self.view.panes["output"] = bool(self.output_pane)
        self.apply_layout()
        if self.autostart:
            self._start(self.source)
        if self.own_frames:
            self.set_interval(1.0 / self.frame_hz, self.frame)

    def start(self) -> None:
        """Starts a source that was not started when mounted."""
        if not self.started:
            self._start(self.source)
            self.refresh_now()

    def on_resize(self) -> None:
        self.relayout(repaint=False)

    def relayout(self, repaint: bool = True) -> None:
        """After a resize, which can come as the app closes, after some of its widgets went."""
        if self._ready:
            try:
                self.apply_layout()
                if repaint:
                    self.refresh_now()
            except NoMatches:
                self._ready = False

    @property
    def layout_size(self) -> tuple[int, int]:
        """The size its panes are laid out for: the screen's, unless it shares the screen."""
        width, height = self.size if self.shares_screen else self.app.size
        return width, height

    def apply_layout(self) -> None:
        if not self._ready:
            return
        width, height = self.layout_size
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
        sizes = (width, height, ncores, tuple(sorted(panes.items())), wide, self.view.selected is not None,
                 self.presenter)
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
        lines = self.query_one("#lines")
        lines.styles.height = max(4, min(9, height // 5))
        lines.display = panes.get("lines", False)
        output = self.query_one("#output")
        output.styles.height = output_h
        output.display = panes["output"]
        if self.presenter:  # nothing but the point, the GIL, the threads and what the glyphs mean
            for name in ("#header", "#cores", "#bottom", "#stackline", "#lines", "#output"):
                self.query_one(name).display = False
        self.query_one("#header").display = not self.presenter
        self.query_one("#caption").display = self.presenter
        if self.in_comparison:
            self.query_one("#legend").display = False  # the comparison has one for both
        self._lanes_dirty = self._figures_dirty = True
        for painter in self.query("Painter"):
            painter.forget_rows()  # type: ignore[attr-defined]

    # ----------------------------------------------------------------- the source
    def _wake(self) -> None:
        self.post_message(SourceData())

    def _start(self, source: Source) -> None:
        self.source = source
        self.started = True
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
            self.take()

    def on_source_ended(self, message: SourceEnded) -> None:
        if message.generation != self._generation:
            return
        self.take()
        if message.error and self.model.end is None:
            self.model.error = message.error
        elif self.model.end is None:
            self.model.error = ("the sampler stopped without saying why" if self.source.capabilities.live
                                else "the recording stops here (truncated: it has no end record)")
        if self.fit_when_loaded and not self.source.capabilities.live and self.view.following:
            self.view.fit(self.model, self.cells_width())
        if self.loop and not self.source.capabilities.live and message.error is None:
            try:
                self.restart(self.source.fresh())
            except NoMatches:  # closing: the pane it clears is gone (nothing was changed)
                self._ready = False
            return
        self.post_message(RunEnded(self))
        self._lanes_dirty = self._figures_dirty = True
        self._last_figures = -1e9
        self.frame()

    def take(self) -> None:
        """Adds what the source has sent since the last frame."""
        self._last_take = now = self.clock()
        items = self.feed.take()
        model = self.model
        tap = self.tap
        for rec in items:
            model.add(rec)
            if tap is not None:
                tap(rec)
            if isinstance(rec, Notice):
                self.app.notify(rec.text, severity="warning", timeout=10)
        if model.output_seen > self._output_seen and (model.end is not None
                                                      or now - self._output_written >= self.output_every_s):
            self._write_output(now)  # (when nothing came, too: what waited is written)
        if not items:
            return
        if len(model.order) != self._known_threads:
            self._known_threads = len(model.order)
        view = self.view
        if self._show_up_to is not None and model.times:
            # a step shows the tick it asked for; a jump, the time it asked for once it is here
            if self._show_up_to < 0 or model.t_last >= self._show_up_to:
                view.end_t = model.t_last if self._show_up_to < 0 else self._show_up_to
                self._show_up_to = None
        if view.following or not model.finished(view.zoom, (view.right_edge(model) - 1) // view.zoom):
            self._lanes_dirty = True
        self._figures_dirty = True

    def _write_output(self, now: float) -> None:
        model = self.model
        self._output_written = now
        new = model.output_seen - self._output_seen
        chunks = model.output[-new:] if new <= len(model.output) else model.output
        self._output_seen = model.output_seen
        out = "".join(c.data for c in chunks)
        if out:
            try:
                self.query_one("#output", Log).write(out)
            except NoMatches:  # closing: written to the recording, not to a pane that is gone
                pass

    # ----------------------------------------------------------------- painting
    def frame(self, take: bool = True) -> None:
        if self._ready:
            try:
                self._frame(take)
            except NoMatches:  # the app is closing: its widgets go before its timers stop
                self._ready = False

    def _frame(self, take: bool = True) -> None:
        if take:
            self.take()
        now = self.clock()
        window = (self.view.right_edge(self.model), self.view.zoom)
        if window != self._drawn_window:  # moved by another run on the same time axis, too
            self._drawn_window = window
            self._lanes_dirty = self._figures_dirty = True
        if self.show_ui_cost:
            self._measure_cost(now)
        if self._sizes is not None and (self._sizes[2] != max(1, len(self.model.cores) or 2)
                                        or self._sizes[:2] != self.layout_size):
            self.apply_layout()
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

    def update_figures(self) -> None:
        self.figures = present.figures(self.model, self.view, self.cells_width(), self.gutter_width)
        facts = self.source_facts
        spans, lines = present.header(self.model, self.view, facts, self._ui_cost if self.show_ui_cost else None,
                                      self.layout_size[0] - 2)
        header = self.query_one("#header", Static)
        if header.styles.height is None or header.styles.height.value != lines:
            header.styles.height = lines
        header.update(as_text(spans), layout=False)
        scenario = catalog.find(self.model.header.scenario or facts.scenario)
        if self.presenter:
            caption = Text(catalog.text_of(scenario, "summary") if scenario is not None else
                           (self.model.header.command or facts.label), style="bold")
            self.query_one("#caption", Static).update(caption)
        info, stack_line = present.info(self.model, self.view, self.cells_width(), facts, scenario, catalog.text_of)
        self.query_one("#info", Static).update(as_text(info), layout=False)
        if stack_line:
            self.query_one("#stackline", Static).update(Text(stack_line), layout=False)
        if self.view.panes.get("lines"):
            pane = self.query_one("#lines", LinesPane)
            rows = max(4, min(9, self.layout_size[1] // 5))
            spans, pane.row_lines = present.lines_pane(self.model, self.view, self.cells_width(), self.layout_size[0] - 2,
                                                       rows - 2)
            pane.update(as_text(spans), layout=False)
        own = (self._ui_cost or 0.0) if self.source.capabilities.live else 0.0
        self.show_outcome(present.outcome(self.model, self.figures, own))
        self.apply_layout()

    def show_outcome(self, outcome: present.Outcome) -> None:
        """The work done and the scenario's result, on screen at every size; in large type at the end."""
        self.outcome = outcome
        line = self.query_one("#outcome", Static)
        big = self.query_one("#big", Digits)
        text = Text()
        if outcome.warning:
            text.append(outcome.warning, style="bold reverse")
            if outcome.line:
                text.append("\n")
        if outcome.big is not None:  # the result is in large type: its caption, and the work done
            text.append(outcome.caption, style="bold")
            if outcome.work:
                text.append("  ·  " + outcome.work)
        else:
            text.append(outcome.line)
        line.display = bool(text.plain)
        # a layout re-arranges and repaints the whole screen: only when the line's height may change
        shape = text.plain.count("\n"), len(text.plain) // max(1, line.size.width or 1)
        line.update(text, layout=shape != self._outcome_shape)
        self._outcome_shape = shape
        big.display = outcome.big is not None
        if outcome.big is not None and big.value != outcome.big:
            big.update(outcome.big)

    def refresh_now(self) -> None:
        """Recomputes figures and repaints at once (after a key)."""
        self._figures_dirty = True
        self._last_figures = -1e9
        self._lanes_dirty = True
        self._frame()

    # ----------------------------------------------------------------- what keys do
    def toggle_pause(self) -> None:
        if self.view.paused:
            self.view.follow()
            self.source.set_paused(False)
        else:
            self.source.set_paused(True)
            self.take()  # what was on its way: the view stops at the last tick there is
            self.view.pause(self.model)
        self.refresh_now()

    def scroll_time(self, screens: float) -> None:
        cells = self.cells_width()
        step = int(round(screens * cells)) or (1 if screens > 0 else -1)
        if self.view.following:
            self.source.set_paused(True)
        if step > 0 and self._at_head() and self._can_play_on():
            # at the head of a replay: play on as far as the scroll would go
            self._play_to(self.model.t_last + step * self.view.zoom)
            return
        self.view.scroll(self.model, step)
        self.refresh_now()

    # replay controls ---------------------------------------------------------------
    def _at_head(self) -> bool:
        return self.view.following or (self.view.end_t or 0) >= self.model.t_last

    def _can_play_on(self) -> bool:
        """A replay that has more to hand over."""
        return self.source.capabilities.seekable and not getattr(self.source, "done", True)

    def _play_to(self, t: int) -> None:
        """Moves a paused replay on to stream time t; the view goes with it."""
        self.source.set_paused(True)
        self.view.paused = True
        self.view.end_t = t
        self._show_up_to = t
        self.source.seek(t)  # type: ignore[attr-defined]
        self.refresh_now()

    def step(self, ticks: int) -> None:
        """One tick on (ticks > 0) or back: a paused replay at its head plays exactly one more."""
        model, view = self.model, self.view
        if not model.times:
            return
        if view.following:
            view.pause(model)
            self.source.set_paused(True)
        if ticks > 0 and self._at_head() and self._can_play_on():
            self.source.set_paused(True)
            self._show_up_to = -1  # the next tick to arrive, whenever it does
            self.source.step(ticks)  # type: ignore[attr-defined]
            return
        edge = view.right_edge(model)
        i = model.tick_index(edge) - model.base  # the tick the window ends with
        i = max(0, min(len(model.times) - 1, i + ticks))
        view.paused = True
        view.end_t = model.times[i]
        view.clamp(model, None)
        self.refresh_now()

    def set_speed(self, faster: int) -> float | None:
        """One step along the replay speeds; the new speed, or None for a live run."""
        source = self.source
        if not source.capabilities.seekable:
            return None
        speeds = SPEEDS
        speed = getattr(source, "speed", 1.0) or 1.0
        if faster > 0:
            new = next((x for x in speeds if x > speed), speeds[-1])
        else:
            new = next((x for x in reversed(speeds) if x < speed), speeds[0])
        source.set_speed(new)  # type: ignore[attr-defined]
        self.refresh_now()
        return new

    def jump_to(self, t: int) -> None:
        """To stream time t: in the data already here, or (a replay) on to it."""
        if t > self.model.t_last and self._can_play_on():
            self._play_to(t)
            return
        self.source.set_paused(True)
        self.view.paused = True
        self.view.end_t = max(t, 1)
        self.view.clamp(self.model, None)
        self.refresh_now()

    def toggle_presenter(self) -> bool:
        self.presenter = not self.presenter
        for painter in self.query("Painter"):
            painter.forget_rows()  # type: ignore[attr-defined]
        self.apply_layout()
        self.query_one(Legend).refresh(layout=True)
        self.refresh_now()
        return self.presenter

    def toggle_loop(self) -> bool:
        self.loop = not self.loop
        self.refresh_now()
        return self.loop

    def go_start(self) -> None:
        self.source.set_paused(True)
        self.view.go_start(self.model, self.cells_width())
        self.refresh_now()

    def fit(self) -> None:
        """The finest zoom at which the whole history fits the lanes."""
        if self.view.fit(self.model, self.cells_width()):
            self.refresh_now()

    def follow(self) -> None:
        self.view.follow()
        self.source.set_paused(False)
        self.refresh_now()

    def zoom(self, step: int) -> bool:
        if self.view.zoom_by(self.model, step, self.cells_width()):
            self.refresh_now()
            return True
        return False

    def select_move(self, step: int) -> None:
        tids = [r[0].tid for r in self.table_rows]
        if not tids:
            return
        if self.view.selected in tids:
            i = max(0, min(len(tids) - 1, tids.index(self.view.selected) + step))
        else:
            i = 0 if step > 0 else len(tids) - 1
        self.select(tids[i], None)

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

    def on_lines_pane_picked(self, message: LinesPane.Picked) -> None:
        """A line picked in the lines pane: the lanes dim every cell where no thread was on it."""
        self.pick_line(None if self.view.selected_line == message.line else message.line)

    def pick_line(self, line: int | None) -> None:
        self.view.selected_line = line
        self.refresh_now()

    def toggle_pane(self, pane: str) -> None:
        self.view.panes[pane] = not self.view.panes[pane]
        self.apply_layout()
        self.refresh_now()

    def restart(self, source: Source, start: bool = True) -> None:
        """Starts over with this source (the same run again, or another target); start=False
        waits for start() (the second of two runs one after the other)."""
        output = self.query_one("#output", Log)  # first: as the app closes, it may be gone
        self.source.stop()
        self.source.set_paused(False)
        self.model = History(self.max_thread_ticks)
        self.view.follow()
        self.view.zoom = DEFAULT_ZOOM  # a new run starts at the usual scale, not the last one's fit
        self.view.selected = None
        self.view.selected_t = None
        self.figures = present.Figures()
        self._known_threads = 0
        self._output_seen = 0
        output.clear()
        for painter in self.query("Painter"):
            painter.forget_rows()  # type: ignore[attr-defined]
        if start:
            self._start(source)
        else:
            self.source, self.started = source, False
        self.refresh_now()

    def stop(self) -> None:
        self.source.stop()

    def on_unmount(self) -> None:
        self.source.stop()
