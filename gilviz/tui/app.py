"""The live view: an app around one timeline view (tui/timeline.py), for a live sampler and a
recording alike.

The app holds what is the screen's, not a run's: the theme, the help and picker screens, the
screenshot, the palette's commands; its keys act on the timeline view, which owns the run.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import io
import os
import signal
import time
from functools import partial
from typing import Any, Callable, Iterable

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.widgets import Digits, Footer, Static

from ..errors import UserError
from ..recording import RecordingWriter
from ..sources import LiveSource, Source
from ..timeline import present
from ..timeline.store import MAX_THREAD_TICKS
from ..timeline.view import View
from ..timeline.view import SORT_LABELS
from . import catalog, theme
from .screens import HelpScreen, JumpScreen, PickScreen
from .timeline import FIGURES_HZ, FRAME_HZ, OUTPUT_EVERY_S, RunEnded, TimelineView
from .widgets import Legend, ThreadClicked, WorkLanes

# The collector's full scans walked every widget, style and stack entry the app keeps, five times
# in 12 s at 64 threads (9 ms of CPU a second, a 26 ms pause each): what lives as long as the app
# is taken out of its scans, and the young generation is scanned less often, so that a frame's
# short-lived strips die before they are promoted.
HEAP_SETTLE_EVERY_S = 60.0  # ...and then everything is scanned once, and what is left frozen again
YOUNG_THRESHOLD = 10_000


def _heap_trimmer() -> Callable[[int], int] | None:
    """glibc's malloc_trim, which hands the free pages inside the heap back to the system: once
    its history is full, the view frees and makes megabytes of it every few seconds, and the
    free pages left between live blocks added 10 to 25 MB to a 140 MB view (less than a
    millisecond a call). None where the C library has none (musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_trim_heap = _heap_trimmer()


class TargetChecked(Message):
    def __init__(self, target: list[str], error: str | None) -> None:
        super().__init__()
        self.target = target
        self.error = error


class MainScreen(Screen):
    """The main screen: its widgets cover all of it, so its own background is never seen
    (BLANK saves Textual re-rendering it under every frame's changes)."""

    BLANK = True

    def on_resize(self) -> None:
        for timeline in self.query(TimelineView):
            timeline.relayout()


class GilvizApp(App[int]):
    TITLE = "gilviz"
    CSS_PATH = "gilviz.tcss"
    # The footer shows the first few (it must fit 80 columns, with help and quit); `?` lists them all.
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", key_display="?"),
        Binding("q,ctrl+c", "quit", "Quit", key_display="q", priority=True),
        Binding("space", "pause", "Pause"),
        Binding("space", "resume", "Resume"),
        Binding("plus,equals_sign", "zoom(-1)", "Zoom in", key_display="+"),
        Binding("minus,underscore", "zoom(1)", "Zoom out", key_display="-", show=False),
        Binding("f,end", "follow", "Follow"),
        Binding("r", "restart", "Restart"),
        Binding("n", "pick", "New"),
        Binding("left", "scroll_time(-0.25)", "Back", show=False),
        Binding("right", "scroll_time(0.25)", "Forward", show=False),
        Binding("shift+left,pageup", "scroll_time(-1)", "Page back", show=False),
        Binding("shift+right,pagedown", "scroll_time(1)", "Page forward", show=False),
        Binding("home", "go_start", "Start", show=False),
        Binding("comma", "step(-1)", "Tick back", show=False),
        Binding("full_stop", "step(1)", "Tick forward", show=False),
        Binding("left_square_bracket", "speed(-1)", "Slower", show=False),
        Binding("right_square_bracket", "speed(1)", "Faster", show=False),
        Binding("j", "jump", "Jump to a time", show=False),
        Binding("l", "loop", "Loop", show=False),
        Binding("p", "presenter", "Presenter", show=False),
        Binding("0", "fit", "Whole run", show=False),
        Binding("up", "select_move(-1)", "Previous thread", show=False),
        Binding("down", "select_move(1)", "Next thread", show=False),
        Binding("escape", "clear_selection", "Clear selection", show=False),
        Binding("s", "cycle_sort", "Sort", show=False),
        Binding("g", "toggle_grouping", "Group", show=False),
        Binding("o", "toggle_pane('output')", "Output", show=False),
        Binding("c", "toggle_pane('cores')", "Cores", show=False),
        Binding("i", "toggle_pane('gil')", "GIL", show=False),
        Binding("d", "toggle_pane('table')", "Table", show=False),
        Binding("w", "toggle_pane('lines')", "Lines", show=False),
        Binding("t", "cycle_theme", "Theme", show=False),
        Binding("ctrl+s,f8", "screenshot_svg", "Screenshot", show=False),
    ]

    def __init__(self, source: Source, *, theme_name: str | None = None, frame_hz: float = FRAME_HZ,
                 figures_hz: float = FIGURES_HZ, show_ui_cost: bool = True, output_pane: bool | None = None,
                 live_options: list[str] | None = None, check_target: Callable[[list[str]], None] | None = None,
                 new_source: Callable[[list[str], str | None], Source] | None = None,
                 screenshot_dir: str | None = None, clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.process_time, max_thread_ticks: int = MAX_THREAD_TICKS,
                 fit_when_loaded: bool = False, compare: Source | None = None, together: bool = False,
                 names: list[str] | None = None, record_to: RecordingWriter | None = None, toasts: bool = True,
                 output_every_s: float = OUTPUT_EVERY_S):
        """compare: a second run, shown under the first on one time axis (together: run at the same
        time, else after it); names: what to call the two; record_to: a writer both runs go to;
        toasts: False for frames drawn for export (a toast's life is wall-clock time, not the run's);
        output_every_s: how often the output pane may be written (0 for export, likewise)."""
        super().__init__()
        for t in theme.THEMES:
            self.register_theme(t)
        self.theme = theme_name or os.environ.get("GILVIZ_THEME") or theme.DEFAULT_THEME
        options = dict(frame_hz=frame_hz, figures_hz=figures_hz, show_ui_cost=show_ui_cost, output_pane=output_pane,
                       clock=clock, cpu_clock=cpu_clock, max_thread_ticks=max_thread_ticks,
                       fit_when_loaded=fit_when_loaded, output_every_s=output_every_s)
        self.together = together
        self.names = names or [source.label, compare.label if compare is not None else ""]
        self.record_to = record_to
        if compare is None:
            self.timelines = [TimelineView(source, id="run", **options)]
        else:
            view = View()
            view.panes.update(table=False, output=False)  # two runs share the screen
            taps = [None, None] if record_to is None else [partial(record_to.write, run=i) for i in (0, 1)]
            options.update(output_pane=False, own_frames=False)
            self.timelines = [
                TimelineView(source, view=view, tap=taps[0], id="run-a", **options),
                TimelineView(compare, view=view, tap=taps[1], autostart=together, id="run-b",
                             waiting_for=f"{self.names[1]} starts when {self.names[0]} has ended", **options),
            ]
            view.follow_edge = self._newest_of_running  # one time axis
            for t in self.timelines:
                t.shares_screen = True
                t.in_comparison = True
        self.timeline = self.timelines[0]
        self.live_options = list(live_options or [])
        self.check_target = check_target
        self.new_source = new_source or (lambda target, scenario: LiveSource(target, self.live_options,
                                                                              scenario=scenario))
        self.screenshot_dir = screenshot_dir
        self.toasts = toasts

    # the run on screen (tests and the benchmark read these) ------------------------------
    @property
    def source(self) -> Source:
        return self.timeline.source

    @property
    def model(self):
        return self.timeline.model

    @property
    def view(self):
        return self.timeline.view

    @property
    def rows(self):
        return self.timeline.rows

    @property
    def table_rows(self):
        return self.timeline.table_rows

    @property
    def lane_cells(self) -> int:
        return self.timeline.lane_cells

    @property
    def gutter_width(self) -> int:
        return self.timeline.gutter_width

    @property
    def frames(self) -> int:
        return self.timeline.frames

    def refresh_now(self) -> None:
        for t in self.timelines:
            t.refresh_now()

    # ----------------------------------------------------------------- layout
    def get_default_screen(self) -> Screen:
        return MainScreen(id="_default")

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {**theme.DARK_VARS}

    def compose(self) -> ComposeResult:
        if len(self.timelines) == 1:
            yield self.timeline
        else:
            with Vertical(id="runs"):
                yield from self.timelines
            with Horizontal(id="comparison"):
                with Vertical(id="compare-left"):
                    yield Static(id="compare-caption")
                    yield WorkLanes(self.timelines, ["A", "B"], id="work")
                yield Digits(id="ratio")
            legend = Legend(id="compare-legend")
            legend._gv = self.timeline
            yield legend
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, *self._gc_threshold[1:])
        self.call_later(self._settle_heap)  # after the first layout
        self.set_interval(HEAP_SETTLE_EVERY_S, self._settle_heap)
        if len(self.timelines) > 1:
            self.set_interval(1.0 / FIGURES_HZ, self._compare_figures)
            self.set_interval(1.0 / self.timeline.frame_hz, self._frame_both)
        if not self.is_headless:  # (drawn off screen, an export takes SIGTERM as gilviz's commands do)
            try:  # SIGTERM ends it as q does: its default would leave the terminal as the app set it
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._terminated)
            except (RuntimeError, ValueError):  # not the main thread's loop: its owner takes the signal
                pass

    def _terminated(self) -> None:
        self._stop_and_exit(128 + signal.SIGTERM)

    def _stop_and_exit(self, return_code: int) -> None:
        for t in self.timelines:
            t.stop()
        self.exit(return_code=return_code)

    def _frame_both(self) -> None:
        """Both runs painted in one frame: on one time axis they move together."""
        ready = [t for t in self.timelines if t._ready]
        for t in ready:  # first what each run sent: the time axis follows the newest of them
            t.take()
        for t in ready:
            t.frame(take=False)

    def _compare_figures(self) -> None:
        """The work both runs did per second, and how many times one did the other's."""
        c = present.comparison([t.model for t in self.timelines], self.names, self.together)
        try:
            caption = self.query_one("#compare-caption", Static)
            ratio = self.query_one("#ratio", Digits)
            work = self.query_one(WorkLanes)
            legend = self.query_one("#compare-legend", Legend)  # (by id: each run has a legend of its own)
        except NoMatches:  # closing: the widgets go one by one, before the timers stop
            return
        text = Text()
        for letter, name, rate, unit in zip("AB", self.names, c.rates, c.units):
            text.append(f"{letter} ", style="bold reverse")
            text.append(f" {name}: " + (f"{rate:,.0f} {unit}/s" if rate else "…") + "   ")
        text.append("\n" + (c.caption or "") + ("  ·  " if c.caption else "") + c.note, style="bold")
        caption.update(text)
        ratio.display = c.big is not None
        if c.big is not None and ratio.value != c.big:
            ratio.update(c.big)
        work.refresh_lanes()
        legend.refresh_lanes()

    def on_run_ended(self, message: RunEnded) -> None:
        """One after the other: the second run starts when the first has ended."""
        if len(self.timelines) > 1 and message.timeline is self.timelines[0] and not self.timelines[1].started:
            self.timelines[1].start()

    def _newest_of_running(self) -> int:
        """Following a comparison follows the run under way: run one after the other, the second
        is drawn beside the first's same seconds, not past the first's end."""
        running = [t.model.t_last for t in self.timelines if t.started and not t.model.ended]
        return max(running or [t.model.t_last for t in self.timelines])

    def _others(self) -> list[TimelineView]:
        return self.timelines[1:]

    def _mirror(self) -> None:
        """After a key changed the shared view through the first run: the second follows."""
        for t in self._others():
            if t.started:
                t.source.set_paused(self.view.paused)
            t.refresh_now()

    def notify(self, *args: Any, **kwargs: Any) -> None:
        if self.toasts:
            super().notify(*args, **kwargs)

    def tell(self, message: str, timeout: float = 2) -> None:
        """A passing word on what a key did: it replaces the last, so they never pile up."""
        self.clear_notifications()
        self.notify(message, timeout=timeout)

    # ----------------------------------------------------------------- actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Space pauses or resumes: the footer names the one it will do."""
        if action == "pause":
            return not self.view.paused
        if action == "resume":
            return self.view.paused
        return True

    def action_pause(self) -> None:
        self.action_toggle_pause()

    def action_resume(self) -> None:
        self.action_toggle_pause()

    def action_toggle_pause(self) -> None:
        self.timeline.toggle_pause()
        self._mirror()
        self.refresh_bindings()

    def action_scroll_time(self, screens: float) -> None:
        self.timeline.scroll_time(screens)
        self._mirror()

    def action_step(self, ticks: int) -> None:
        self.timeline.step(ticks)
        self.refresh_bindings()

    def action_speed(self, faster: int) -> None:
        speed = self.timeline.set_speed(faster)
        self.tell(f"replay at ×{speed:g}" if speed is not None else "a live run plays at its own speed")

    def action_jump(self) -> None:
        self.push_screen(JumpScreen(self.model.t_last / 1e6), self._jumped)

    def _jumped(self, t: int | None) -> None:
        if t is not None:
            self.timeline.jump_to(t)
            self.refresh_bindings()

    def action_presenter(self) -> None:
        on = not self.timeline.presenter
        for t in self.timelines:  # a comparison: both runs, each with its own point
            if t.presenter != on:
                t.toggle_presenter()
        if len(self.timelines) > 1:
            self.query_one("#compare-legend", Legend).refresh_lanes()
        self.query_one(Footer).display = not on

    def action_loop(self) -> None:
        if self.source.capabilities.live:
            self.tell("a live run cannot loop: record it, then replay it with l")
            return
        self.tell("the replay starts over when it ends" if self.timeline.toggle_loop() else "no loop")

    def action_go_start(self) -> None:
        self.timeline.go_start()
        self._mirror()

    def action_fit(self) -> None:
        self.timeline.fit()
        self._mirror()

    def action_follow(self) -> None:
        self.timeline.follow()
        self._mirror()

    def action_zoom(self, step: int) -> None:
        zoomed = self.timeline.zoom(step)
        self._mirror()
        if not zoomed:
            self.tell("zoom is already at its " + ("finest (1 ms per cell)" if step < 0 else "widest (1 s per cell)"),
                        timeout=2)

    def action_select_move(self, step: int) -> None:
        self.timeline.select_move(step)

    def action_clear_selection(self) -> None:
        if self.view.selected is not None:
            self.timeline.select(None, None)
        if self.view.selected_line is not None:
            self.timeline.pick_line(None)

    def on_thread_clicked(self, message: ThreadClicked) -> None:
        if message.tid == self.view.selected and message.t is None:
            self.timeline.select(None, None)
        else:
            self.timeline.select(message.tid, message.t)

    def select(self, tid: int | None, t: int | None) -> None:
        self.timeline.select(tid, t)

    def action_cycle_sort(self) -> None:
        sort = self.view.cycle_sort()
        self.tell(f"threads sorted by {SORT_LABELS[sort]}", timeout=2)
        self.refresh_now()

    def action_toggle_grouping(self) -> None:
        self.view.grouped = not self.view.grouped
        self.tell("thread lanes grouped by process" if self.view.grouped else "thread lanes flat", timeout=2)
        self.refresh_now()

    def action_toggle_pane(self, pane: str) -> None:
        self.timeline.toggle_pane(pane)

    def action_cycle_theme(self) -> None:
        names = theme.THEME_NAMES
        i = names.index(self.theme) + 1 if self.theme in names else 0
        self.theme = names[i % len(names)]
        self.tell(f"theme: {self.theme}", timeout=2)

    def action_screenshot_svg(self) -> None:
        """Into the screenshots folder; in a browser (gilviz serve), a download."""
        import datetime

        name = datetime.datetime.now().strftime("gilviz-%Y%m%d-%H%M%S-%f")[:-3] + ".svg"
        folder = self.screenshot_dir or os.getcwd()
        self.clear_notifications()
        # what deliver_screenshot does, but a browser downloads it rather than opening it in a tab
        self.deliver_text(io.StringIO(self.export_screenshot()), save_directory=folder, save_filename=name,
                          open_method="download", mime_type="image/svg+xml", name="screenshot")
        if self.is_web:
            self.tell(f"screenshot {name}: your browser downloads it", timeout=4)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(HelpScreen())

    def action_restart(self) -> None:
        if len(self.timelines) > 1:
            for i, t in enumerate(self.timelines):
                t.restart(t.source.fresh(), start=i == 0 or self.together)
            self.tell("both runs start over")
            return
        self.restart(self.source.fresh())
        self.tell(f"restarted {self.source.label}" if self.source.capabilities.live else "replay restarted",
                    timeout=2)

    def restart(self, source: Source) -> None:
        self.timeline.restart(source)

    def action_pick(self) -> None:
        if len(self.timelines) > 1:
            self.tell("a comparison keeps its two runs: start another with gilviz compare")
            return
        current = self.model.header.scenario or self.source.scenario
        self.push_screen(PickScreen(current), self._picked)

    def _picked(self, target: list[str] | None) -> None:
        if not target:
            return
        self.tell(f"starting {' '.join(target)}…", timeout=2)
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
        # Textual's own Keys, Screenshot and Theme would each be listed twice beside ours
        yield from (c for c in super().get_system_commands(screen) if c.title not in ("Keys", "Screenshot", "Theme"))
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
        for pane in ("output", "cores", "gil", "table", "lines"):
            yield SystemCommand(f"Show / hide {pane}", f"Toggle the {pane} pane",
                                partial(self.action_toggle_pane, pane))
        yield SystemCommand("Cycle theme", "Dark, light, high contrast", self.action_cycle_theme)
        yield SystemCommand("Save SVG screenshot", "Write the screen to an SVG file", self.action_screenshot_svg)
        yield SystemCommand("Help", "Keys, states and lanes", self.action_help)

    async def action_quit(self) -> None:
        self._stop_and_exit(0)

    def on_unmount(self) -> None:
        for t in self.timelines:
            t.stop()
        gc.unfreeze()
        gc.set_threshold(*getattr(self, "_gc_threshold", gc.get_threshold()))

    def _settle_heap(self) -> None:
        """One full scan (cycles among frozen objects, a closed screen say, are freed here), then
        what survived it is out of the scans until the next; and the free pages go back."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        if _trim_heap is not None:
            _trim_heap(0)


def make_app(source: Source, **options: Any) -> GilvizApp:
    """The one way to build the app, for the command line, the tests and the benchmark."""
    return GilvizApp(source, **options)
