"""The painted parts of the screen, drawn with Textual's Line API.

Every lane shares one time axis: the same gutter width and the same cell window, so a
column on screen is the same moment in the cores, the GIL and every thread. Each row is
built once per frame from the model's cells, with runs of equal cells merged into one
Segment, and reused while its cells are unchanged; following a run, where every row moves a
few cells a frame, the runs a row still shows are taken from its last frame. Colours come from
component classes (theme.py), so a theme change restyles everything.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from itertools import chain, groupby, islice
from operator import eq, itemgetter
from typing import TYPE_CHECKING, Any, Callable, Sequence

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar
from textual.filter import ANSIToTruecolor
from textual.strip import Strip
from textual.widgets import Static

from . import theme
from ..timeline.store import (CODE_NAMES, GONE, HELD_BIT, LETTERS, OCCUPIED, OTHERS, PALETTE_SIZE, PARTLY, STATE_MASK, UNKNOWN,
                    History, fmt_zoom)
from ..timeline.present import nice_ceiling, pct
from ..timeline.view import Row, View

if TYPE_CHECKING:
    from .timeline import TimelineView

_RUNS = re.compile(rb"(.)\1*", re.S)
ROWS_CACHED = 4096  # built rows kept per painter (a row is rebuilt only when its cells change)
GUTTERS_CACHED = 2000
SEGMENTS_CACHED = 5000
LANE_RUNS_KEPT = 4096  # lanes whose last frame's runs are kept
SPARKS_KEPT = 20_000  # glyphs of spark values kept per scale
_KIND_SERIAL = itemgetter(0, 1)  # of an owner cell: (kind, serial + 1, ...)
_HELD, _CONTENDED, _HANDOFFS = itemgetter(2), itemgetter(3), itemgetter(4)  # of a GIL cell
_TEXT = itemgetter(0)  # of a Segment


def _same_owner_run(a: tuple, b: tuple) -> bool:
    """Do two owner cells side by side make one run: owned by one thread, or unowned of one kind?"""
    if a[0] == OCCUPIED or a[0] == PARTLY:
        return (b[0] == OCCUPIED or b[0] == PARTLY) and a[1] == b[1]
    return a[0] == b[0]


_UNDERLINE = Style(underline=True)
ON_LINE_BIT, OFF_LINE_BIT = 0x20, 0x40  # or'ed into cell codes while a line is picked
UNSPLIT_BIT = 0x80  # or'ed into a running cell's code where no GIL sample split its time on a CPU
_REVERSE_BOLD = Style(reverse=True, bold=True)
_BOLD = Style(bold=True)


def fit(text: str, width: int) -> str:
    """Pads or cuts text to exactly `width` cells (with an ellipsis when cut)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text + " " * (width - len(text))
    return text[: width - 1] + "…"


def rfit(text: str, width: int) -> str:
    if len(text) >= width:
        return text[-width:] if width > 0 else ""
    return " " * (width - len(text)) + text


def short_command(command: str) -> str:
    """The command line on one line, with the interpreter's folder left out."""
    head, _, rest = command.partition(" ")
    head = head.rsplit("/", 1)[-1]
    return " ".join(f"{head} {rest}".split())


class Palette:
    """Rich styles of one widget, built from its component classes."""

    def __init__(self, w: "Painter"):
        get = w.get_component_rich_style
        self.state = [get(c) for c in theme.STATE_CLASSES]
        self.state_held = [s + _UNDERLINE for s in self.state]
        self.off_line = Style(dim=True)  # cells off the line picked in the lines pane
        self.thread = [get(c) for c in theme.THREAD_CLASSES]
        self.thread_letter = [s + _REVERSE_BOLD for s in self.thread]
        self.gutter = get("gv--gutter")
        self.gutter_selected = get("gv--gutter-selected")
        self.selected = get("gv--selected")
        self.selected_letter = self.selected + _REVERSE_BOLD
        self.selected_row = get("gv--selected-row", partial=True)
        self.others = get("gv--others")
        self.unsplit = get("gv--unsplit")
        self.muted = get("gv--muted")
        self.axis = get("gv--axis")
        self.spark_held = get("gv--spark-held")
        self.spark_contended = get("gv--spark-contended")
        self.spark_handoffs = get("gv--spark-handoffs")
        self.heading = get("gv--heading")
        self.value = get("gv--value")
        self.base = w.rich_style


class LaneScrollBar(ScrollBar):
    """A scrollbar whose lines are built once per position and size. The lanes beside it repaint
    every frame, and Textual's compositor then asks every widget in the band they span for its
    lines again: an unchanged scrollbar cost more than a lane (18 ms of CPU a second at 64 threads)."""

    _lines: tuple[Any, list[Strip]] | None = None

    def render_lines(self, crop: Region) -> list[Strip]:
        key = (crop, self.size, self.position, self.window_size, self.window_virtual_size, self.mouse_over,
               self.grabbed, self.app.theme, self.app.get_line_filters())
        if self._lines is None or self._lines[0] != key:
            self._lines = (key, super().render_lines(crop))
        return self._lines[1]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines = None


class Painter(ScrollView):
    """A ScrollView that paints rows; shares the palette and the time axis."""

    COMPONENT_CLASSES = theme.COMPONENT_CLASSES
    DEFAULT_CSS = theme.component_css("Painter") + """
    Painter {
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
        overflow-y: auto;
        height: auto;
    }
    """
    can_focus = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pal: Palette | None = None
        self._gv: Any = None
        self._rows: LRUCache[int, tuple[Any, Strip]] = LRUCache(ROWS_CACHED)
        self._win: tuple[int, int] | None = None
        self._width = 0
        self._w = 0
        self._top = 0
        self._gutters: LRUCache = LRUCache(GUTTERS_CACHED)
        # a run of cells as a Segment, by (code, length, highlight): a few per lane per frame, so a
        # dict (an LRUCache lookup cost more than building most rows); bounded by the codes and widths
        self._segs: dict[tuple[int, int, bool], Segment] = {}
        self._sparks: dict[float, dict[float, str]] = {}  # scale -> value -> glyph
        self._lane_runs: dict[Any, tuple] = {}  # lane -> its last frame's (c0, cells, highlight, run starts, segments)
        self._shown: dict[int, Strip] = {}
        self._shown_offset = 0
        self._frame_strips: dict[tuple[int, int], Strip] = {}

    @property
    def vertical_scrollbar(self) -> ScrollBar:
        """Textual's, made as Widget.vertical_scrollbar makes it, but one that keeps its lines."""
        if self._vertical_scrollbar is None:
            bar = self._vertical_scrollbar = LaneScrollBar(vertical=True, name="vertical",
                                                           thickness=self.scrollbar_size_vertical)
            bar.display = False
            self.app._start_widget(self, bar)
        return self._vertical_scrollbar

    def render_lines(self, crop: Region) -> list[Strip]:
        """Our lines as they are: no border, padding or tint to add, so skip Textual's styles cache
        (its per-line bookkeeping is most of a frame's cost). Filters (NO_COLOR) still apply."""
        filters = self.get_line_filters()
        background = self.background_colors[1] if filters else None
        width = self.line_width
        x1, x2 = crop.column_span
        whole = x1 == 0 and x2 == width
        render = self.render_line
        strips = []
        for y in crop.line_range:
            strip = render(y)
            for line_filter in filters:
                strip = strip.apply_filter(line_filter, background)
            strips.append(strip if whole else strip.crop(x1, x2))
        return strips

    def get_line_filters(self):
        # every colour here is a theme colour (truecolor): converting ANSI colours is wasted work;
        # other filters (NO_COLOR's monochrome) still apply
        return [f for f in self.app.get_line_filters() if not isinstance(f, ANSIToTruecolor)]

    @property
    def gv(self) -> "TimelineView":
        """The timeline view this painter belongs to: its model, view and figures."""
        if self._gv is None:
            node = self.parent
            while node is not None and not hasattr(node, "figures"):
                node = node.parent
            self._gv = node
        return self._gv  # type: ignore[return-value]

    @property
    def pal(self) -> Palette:
        if self._pal is None:
            self._pal = Palette(self)
        return self._pal

    def notify_style_update(self) -> None:
        """Another theme: every line built so far is in the old colours, even those of this frame."""
        super().notify_style_update()
        self._pal = None
        self.forget_rows()
        self._gutters.clear()
        self._segs.clear()
        self._lane_runs.clear()
        self._shown.clear()
        self._frame_strips.clear()
        self.refresh()

    def forget_rows(self) -> None:
        """Drops the rows built so far (the layout or the data under them changed)."""
        self._rows.clear()

    @property
    def model(self) -> History:
        return self.gv.model

    @property
    def view(self) -> View:
        return self.gv.view

    @property
    def line_width(self) -> int:
        """The widget's width, read once per frame (Textual computes it on every access)."""
        if not self._w:
            self._w = self.size.width
        return self._w

    @property
    def gut(self) -> int:
        return self.gv.gutter_width

    def cells_width(self) -> int:
        """Cells in every lane: the screen less the gutter, its rule, and a column for a scrollbar."""
        return self.gv.lane_cells

    def window(self) -> tuple[int, int]:
        """The cells shown, computed once per frame (see refresh_lanes)."""
        if self._win is None:
            self._width = self.line_width
            self._win = self.view.window(self.model, self.cells_width())
        return self._win

    def new_frame(self) -> None:
        if len(self._segs) > SEGMENTS_CACHED:  # (widths come and go with resizes)
            self._segs.clear()
        self._win = None
        self._w = 0
        self._top = round(self.scroll_y)
        self._frame_strips.clear()

    def paint_line(self, y: int) -> Strip:
        raise NotImplementedError

    def render_line(self, y: int) -> Strip:
        """A lane's line, built at most once per frame."""
        key = (round(self.scroll_y) + y, self.line_width)
        hit = self._frame_strips.get(key)
        if hit is None:
            hit = self._frame_strips[key] = self.paint_line(y)
        return hit

    def refresh_changed(self) -> None:
        """Repaints only the lines whose strip changed since they were last drawn."""
        height = self.scrollable_content_region.height
        shown = self._shown
        if self._shown_offset != self.scroll_offset.y or len(shown) > height:
            shown.clear()
            self._shown_offset = self.scroll_offset.y
        width = self.line_width
        regions = []
        start = None
        for y in range(height):
            strip = self.render_line(y)
            if shown.get(y) is strip:
                if start is not None:
                    regions.append(Region(0, start, width, y - start))
                    start = None
                continue
            shown[y] = strip
            if start is None:
                start = y
        if start is not None:
            regions.append(Region(0, start, width, height - start))
        if regions:
            self.refresh(*regions)

    def on_resize(self) -> None:
        self._win = None
        self._w = 0
        self.forget_rows()
        self._shown.clear()
        self._frame_strips.clear()

    def set_rows(self, count: int) -> None:
        size = Size(self.line_width, count)
        if self.virtual_size != size:
            self.virtual_size = size

    def cached(self, index: int, key: Any, build) -> Strip:
        key = (key, self.line_width)
        hit = self._rows.get(index)
        if hit is not None and hit[0] == key:
            return hit[1]
        strip = build()
        self._rows[index] = (key, strip)
        return strip

    def finish(self, segments: list[Segment], style: Style | None = None) -> Strip:
        """A strip exactly as wide as the widget (every glyph used here is one cell wide)."""
        width = self.line_width
        used = sum(map(len, map(_TEXT, segments)))
        if used < width:
            segments.append(Segment(" " * (width - used), style or self.pal.base))
            return Strip(segments, width)
        if used == width:
            return Strip(segments, width)
        return Strip(segments).adjust_cell_length(width, style or self.pal.base)

    # the pieces of a lane -------------------------------------------------------
    def gutter_segments(self, text: str, style: Style, letter: str | None = None,
                        letter_style: Style | None = None) -> list[Segment]:
        key = (text, style, letter, letter_style, self.gut)
        hit = self._gutters.get(key)
        if hit is not None:
            return list(hit)
        g = self.gut
        segs = []
        if letter is not None:
            segs.append(Segment(letter, letter_style))
            segs.append(Segment(" ", style))
            g -= 2
        segs.append(Segment(fit(text, g), style))
        segs.append(Segment("│", self.pal.axis))
        self._gutters[key] = tuple(segs)
        return segs

    def state_segments(self, cells: bytes, highlight: bool, on_line: bytes | None = None,
                       lane: Any = None, c0: int = 0) -> list[Segment]:
        """on_line: 1 for each cell where the thread was on the line picked; the others are dimmed.
        lane, c0: see _kept_runs."""
        if on_line is not None:
            cells = bytes(c | (ON_LINE_BIT if m else OFF_LINE_BIT) for c, m in zip(cells, on_line))
            lane = None
        return self._kept_runs(lane, cells, c0, highlight,
                               lambda cells, pos, c0: self._state_runs(cells, highlight, pos, c0), eq)

    def owner_segments(self, cells: list[tuple], selected_serial: int, lane: Any = None, c0: int = 0) -> list[Segment]:
        """Cells owned by threads (cores, GIL holder): the thread's colour, its letter at each run start.
        A core or the GIL often changes hands every cell: each run's segments are kept (lane, c0: see
        _kept_runs)."""
        runs = self._kept_runs(lane, cells, c0, selected_serial,
                               lambda cells, pos, c0: self._owner_runs(cells, pos, c0, selected_serial), _same_owner_run)
        return list(chain.from_iterable(runs))

    def _kept_runs(self, lane: Any, cells: Sequence, c0: int, mark: Any, runs_of: Callable, same_run: Callable) -> list:
        """What runs_of(cells, pos, c0) gives for cells[pos:] (an item a run, and the cell number each
        starts at) for all the cells, c0 being the first one's number.

        With a lane, the runs of its last frame are kept, and those still on screen over the same
        cells are taken as they were (following a run, the lanes move a few cells a frame): only
        the cells at the edges are read again. The list returned is kept for the next frame:
        callers add it to theirs, never change it. mark: what else the items were drawn with."""
        last = self._lane_runs.get(lane) if lane is not None else None
        if last is not None:
            items = self._shifted_runs(lane, last, cells, c0, mark, runs_of, same_run)
            if items is not None:
                return items
        items, starts = runs_of(cells, 0, c0)
        if lane is not None:
            if len(self._lane_runs) > LANE_RUNS_KEPT:
                self._lane_runs.clear()
            self._lane_runs[lane] = (c0, cells, mark, starts, items)
        return items

    def _shifted_runs(self, lane: Any, last: tuple, cells: Sequence, c0: int, mark: Any, runs_of: Callable,
                      same_run: Callable) -> list | None:
        """This frame's runs from the last frame's, when the cells they share are the same; None when
        they are not (the lane was scrolled back, resized, or its data changed)."""
        was_c0, was_cells, was_mark, starts, items = last
        if mark != was_mark or c0 < was_c0 or len(cells) != len(was_cells):
            return None
        i = bisect_left(starts, c0)  # the first run of the last frame that starts on screen now
        j = len(starts) - 1  # the last one may have grown: read again from its start
        if i >= j:
            return None
        kept_to = starts[j]
        if cells[: kept_to - c0] != was_cells[c0 - was_c0 : kept_to - was_c0]:
            return None
        end = kept_to - c0
        if same_run(cells[end], cells[end - 1]):  # the last run's first cell changed: it joins the run before
            return None
        head = starts[i] - c0  # cells of a run cut at the left edge: one run, shorter
        new_items, new_starts = runs_of(cells[:head], 0, c0) if head > 0 else ([], [])
        new_items += items[i:j]
        new_starts += starts[i:j]
        tail, tail_starts = runs_of(cells, end, c0)
        new_items += tail
        new_starts += tail_starts
        self._lane_runs[lane] = (c0, cells, mark, new_starts, new_items)
        return new_items

    def _state_runs(self, cells: bytes, highlight: bool, pos: int, c0: int) -> tuple[list[Segment], list[int]]:
        """The segments of the runs of cells[pos:], and the cell number each run starts at."""
        cache = self._segs
        out: list[Segment] = []
        append = out.append
        starts: list[int] = []
        for m in _RUNS.finditer(cells, pos):
            start, end = m.span()
            starts.append(c0 + start)
            key = (cells[start], end - start, highlight)
            seg = cache.get(key)
            if seg is None:
                code = cells[start]
                pal = self.pal
                state = code & STATE_MASK
                style = pal.state_held[state] if code & HELD_BIT else pal.state[state]
                glyph = theme.GLYPH_LIST[state]
                if code & UNSPLIT_BIT:
                    style, glyph = pal.unsplit, theme.UNSPLIT_GLYPH
                if highlight:
                    style = style + pal.selected_row
                if code & OFF_LINE_BIT:
                    style = style + pal.off_line
                seg = cache[key] = Segment(glyph * (end - start), style)
            append(seg)
        return out, starts

    def _owner_runs(self, cells: list[tuple], pos: int, c0: int,
                    selected_serial: int) -> tuple[list[tuple[Segment, ...]], list[int]]:
        """The segments of each run of cells[pos:], and the cell number each run starts at."""
        cache = self._segs
        runs: list[tuple[Segment, ...]] = []
        starts: list[int] = []
        owned: list[tuple[int, int]] = []  # the run of one thread's cells being gathered: (kind, count)
        owner = 0
        at = c0 + pos
        for (kind, serial), group in groupby(islice(cells, pos, None), _KIND_SERIAL):
            n = len(list(group))
            if kind == OCCUPIED or kind == PARTLY:
                if owned and serial == owner:
                    owned.append((kind, n))
                    at += n
                    continue
                if owned:
                    runs.append(self._owned_run(owner, owner - 1 == selected_serial, owned))
                owned = [(kind, n)]
                owner = serial
                starts.append(at)
                at += n
                continue
            if owned:
                runs.append(self._owned_run(owner, owner - 1 == selected_serial, owned))
                owned = []
            key = (-1, kind, n)
            segs = cache.get(key)
            if segs is None:
                pal = self.pal
                if kind == OTHERS:
                    segs = (Segment(theme.OTHERS_GLYPH * n, pal.others),)
                elif kind == UNKNOWN:
                    segs = (Segment(theme.UNKNOWN_GLYPH * n, pal.muted),)
                else:
                    segs = (Segment(" " * n, pal.base),)
                cache[key] = segs
            runs.append(segs)
            starts.append(at)
            at += n
        if owned:
            runs.append(self._owned_run(owner, owner - 1 == selected_serial, owned))
        return runs, starts

    def _owned_run(self, owner: int, selected: bool, owned: list[tuple[int, int]]) -> tuple[Segment, ...]:
        """One thread's run of cells: its letter first (if the run is longer than a cell), in its colour."""
        key = (owner, selected, *owned)
        segs = self._segs.get(key)
        if segs is not None:
            return segs
        pal = self.pal
        k = (owner - 1) % PALETTE_SIZE
        style, lstyle = (pal.selected, pal.selected_letter) if selected else (pal.thread[k], pal.thread_letter[k])
        kind, n = owned[0]
        if len(owned) == 1 and n == 1:
            segs = (Segment("█" if kind == OCCUPIED else theme.PARTLY_GLYPH, style),)
        else:
            glyphs = [("█" if kind == OCCUPIED else theme.PARTLY_GLYPH) * (n - 1)]
            glyphs += [("█" if kind == OCCUPIED else theme.PARTLY_GLYPH) * n for kind, n in owned[1:]]
            segs = (Segment(LETTERS[(owner - 1) % len(LETTERS)], lstyle), Segment("".join(glyphs), style))
        self._segs[key] = segs
        return segs

    def spark_segments(self, values: list[float], style: Style, scale: float = 1.0) -> list[Segment]:
        """Values come again frame after frame (a finished cell's do not change): each one's glyph is kept."""
        if scale <= 0:
            return [Segment(" " * len(values), style)]
        glyph_of = self._sparks.get(scale)
        if glyph_of is None or len(glyph_of) > SPARKS_KEPT:
            if len(self._sparks) > 8:
                self._sparks.clear()
            glyph_of = self._sparks[scale] = {}
        try:
            return [Segment("".join(map(glyph_of.__getitem__, values)), style)]
        except KeyError:
            sparks = theme.SPARKS
            k = 8 / scale
            for v in values:
                if v not in glyph_of:
                    glyph_of[v] = " " if v < 0 else sparks[8 if v >= scale else (max(1, round(v * k)) if v > 0 else 0)]
            return [Segment("".join(map(glyph_of.__getitem__, values)), style)]

    def message_segments(self, text: str, style: Style) -> list[Segment]:
        return [Segment(fit(text, self.cells_width()), style)]

    def time_at(self, x: int) -> int | None:
        """Stream time at column x of this widget (None in the gutter)."""
        if x <= self.gut:
            return None
        c0, _ = self.window()
        cell = c0 + x - self.gut - 1
        return cell * self.view.zoom + self.view.zoom // 2


class ThreadClicked(Message):
    def __init__(self, tid: int | None, t: int | None) -> None:
        super().__init__()
        self.tid = tid
        self.t = t


class CoreLanes(Painter):
    """One lane per CPU core: which target thread had it, or other processes (dim), or idle."""

    def refresh_lanes(self) -> None:
        self.new_frame()
        self.set_rows(len(self.model.cores))
        self.refresh_changed()

    def paint_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        model = self.model
        if index >= len(model.cores):
            return Strip.blank(self.line_width, self.pal.base)
        core = model.cores[index]
        c0, c1 = self.window()
        cells = model.core_cells(core, self.view.zoom, c0, c1)
        sel = self.gv.selected_serial
        label = self.gv.core_labels.get(index, f"cpu{index}")
        key = (label, sel, c0, cells, self.gut)

        def build() -> Strip:
            segs = self.gutter_segments(label, self.pal.gutter)
            segs += self.owner_segments(cells, sel, ("core", index), c0)
            return self.finish(segs)

        return self.cached(index, key, build)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.scroll_offset.y + offset.y
        t = self.time_at(offset.x)
        if index >= len(self.model.cores) or t is None:
            return
        core = self.model.cores[index]
        cell = t // self.view.zoom
        (kind, serial), = self.model.core_cells(core, self.view.zoom, cell, cell)
        if serial:
            self.post_message(ThreadClicked(self.model.order[serial - 1].tid, t))


class GilLanes(Painter):
    """The GIL of one process over time: who held it, held %, contended %, hand-offs/s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._frame_cells: tuple | None = None

    def row_count(self) -> int:
        return 2 if self.gv.compact else 4

    def refresh_lanes(self) -> None:
        self.new_frame()
        self._frame_cells = None
        self.set_rows(self.row_count())
        self.refresh_changed()

    def _cells(self, gs, c0: int, c1: int) -> list:
        key = (id(gs), c0, c1, self.view.zoom)
        if self._frame_cells is None or self._frame_cells[0] != key:
            self._frame_cells = (key, self.model.gil_cells(gs, self.view.zoom, c0, c1))
        return self._frame_cells[1]

    def paint_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        gv = self.gv
        model = self.model
        pal = self.pal
        if index >= self.row_count():
            return Strip.blank(self.line_width, pal.base)
        pid = gv.gil_pid
        gs = model.gils.get(pid) if pid is not None else None
        figures = gv.gil_figures or {}
        c0, c1 = self.window()
        labels = gv.gil_labels
        label = labels[index] if index < len(labels) else ""
        if gs is None:
            status = model.gil_status(pid)
            if index == 0:
                segs = self.gutter_segments(label, pal.heading)
                if status == "no GIL":
                    proc = model.processes.get(pid)
                    py = (proc.python if proc else None) or ""
                    text = f"no GIL: a free-threaded build{(' (' + py + ')') if py else ''}; threads run Python in parallel"
                elif status == "not python":
                    text = "not a Python process"
                elif status:
                    proc = model.processes.get(pid)
                    why = proc.gil_why if proc else None
                    text = (f"GIL not located: no GIL figures for this process ({why})" if why  # (it says if yet)
                            else "GIL not located (yet): no GIL figures for this process")
                else:
                    text = "waiting for the first samples…"
                segs += self.message_segments(text, pal.muted)
            else:
                segs = self.gutter_segments(label, pal.gutter)
            return self.finish(segs)
        cells = self._cells(gs, c0, c1)
        sel = gv.selected_serial
        key = (index, label, sel, c0, c1, self.gut, figures.get("handoff_scale"), len(cells),
               cells[-1] if cells else None, cells[0] if cells else None)

        def build() -> Strip:
            if index == 0:
                segs = self.gutter_segments(label, pal.heading)
                segs += self.owner_segments(cells, sel, ("gil", pid), c0)
            elif index == 1:
                segs = self.gutter_segments(label, pal.gutter)
                segs += self.spark_segments(list(map(_HELD, cells)), pal.spark_held)
            elif index == 2:
                segs = self.gutter_segments(label, pal.gutter)
                segs += self.spark_segments(list(map(_CONTENDED, cells)), pal.spark_contended)
            else:
                segs = self.gutter_segments(label, pal.gutter)
                scale = figures.get("handoff_scale") or 1.0
                segs += self.spark_segments(list(map(_HANDOFFS, cells)), pal.spark_handoffs, scale)
            return self.finish(segs)

        if not self.view.following or model.ended:
            return self.cached(index, key, build)
        return build()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or self.scroll_offset.y + offset.y != 0:
            return
        t = self.time_at(offset.x)
        gs = self.model.gils.get(self.gv.gil_pid) if self.gv.gil_pid is not None else None
        if t is None or gs is None:
            return
        cell = t // self.view.zoom
        (kind, serial, *_), = self.model.gil_cells(gs, self.view.zoom, cell, cell)
        if serial:
            self.post_message(ThreadClicked(self.model.order[serial - 1].tid, t))


class ThreadLanes(Painter):
    """One lane per thread: its state over time, underlined where it held the GIL."""

    DEFAULT_CSS = """
    ThreadLanes { height: 1fr; }
    """

    def refresh_lanes(self) -> None:
        self.new_frame()
        self.set_rows(max(1, len(self.gv.rows)))
        self.refresh_changed()

    def paint_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        gv = self.gv
        pal = self.pal
        rows = gv.rows
        if not rows:
            if y == 0:
                text = gv.empty_message()
                return self.finish(self.gutter_segments("", pal.gutter) + self.message_segments(text, pal.muted))
            return Strip.blank(self.line_width, pal.base)
        if index >= len(rows):
            return Strip.blank(self.line_width, pal.base)
        row = rows[index]
        c0, c1 = self.window()
        if row.kind == "proc":
            return self._process_line(index, row, c0, c1)
        if row.kind == "gil":
            return self._interpreter_gil_line(index, row, c0, c1)
        s = row.series
        assert s is not None
        cells = self.model.thread_cells(s, gv.view.zoom, c0, c1)
        unsplit = self.model.unsplit_running_cells(s, gv.view.zoom, c0, c1)
        if unsplit is not None:
            cells = bytes(c | UNSPLIT_BIT if m else c for c, m in zip(cells, unsplit))
        selected = gv.view.selected == s.tid
        line = gv.view.selected_line
        on_line = self.model.line_cells(s.tid, line, gv.view.zoom, c0, c1) if line else None
        key = (s.name, selected, c0, cells, on_line, self.gut, gv.view.grouped, self.line_width)
        hit = self._rows.get(index)
        if hit is not None and hit[0] == key:
            return hit[1]
        i = s.serial % PALETTE_SIZE
        name = (" " + s.name) if gv.view.grouped else s.name
        segs = self.gutter_segments(name, pal.gutter_selected if selected else pal.gutter, s.letter,
                                    pal.thread_letter[i])
        segs += self.state_segments(cells, selected, on_line, s.tid, c0)
        strip = self.finish(segs)
        self._rows[index] = (key, strip)
        return strip

    def _process_line(self, index: int, row: Row, c0: int, c1: int) -> Strip:
        gv = self.gv
        model = self.model
        pal = self.pal
        pid = row.pid
        proc = model.processes.get(pid) if pid is not None else None
        label = f"▾ pid {pid}" if pid is not None else "▾ ?"
        gs = model.gils.get(pid) if pid is not None else None
        ended = pid in model.proc_ended
        if gs is not None and pid != gv.gil_pid:
            label = f"▾ pid {pid} GIL"  # its GIL, drawn on its heading: who held it
            cells = model.gil_cells(gs, gv.view.zoom, c0, c1)
            key = ("proc", label, gv.selected_serial, c0, tuple(c[:2] for c in cells), self.gut)
            return self.cached(index, key, lambda: self.finish(
                self.gutter_segments(label, pal.heading)
                + self.owner_segments(cells, gv.selected_serial, ("gil", pid), c0)))
        status = proc.gil if proc else None
        command = short_command(proc.command if proc else "")
        text = {"no GIL": "no GIL (free-threaded)", "not python": "not Python",
                "located": "its GIL is drawn above" if gs is not None else ""}.get(status or "", "")
        threads = sum(1 for r in gv.rows if r.kind == "thread" and r.pid == pid)
        text = "  ·  ".join(x for x in (command, f"{threads} thread{'s' if threads != 1 else ''}",
                                        "ended" if ended else "", text) if x)
        key = ("proc-text", label, text, self.gut, self.line_width)
        return self.cached(index, key, lambda: self.finish(
            self.gutter_segments(label, pal.heading) + self.message_segments(text, pal.muted)))

    def _interpreter_gil_line(self, index: int, row: Row, c0: int, c1: int) -> Strip:
        """A subinterpreter's own GIL: who held it, like the process's GIL row."""
        gv, pal = self.gv, self.pal
        gs = self.model.interp_gils.get((row.pid, row.interp))
        label = f"  GIL interp {row.interp}"
        if gs is None:
            return self.finish(self.gutter_segments(label, pal.heading))
        cells = self.model.gil_cells(gs, gv.view.zoom, c0, c1)
        key = ("gil", label, gv.selected_serial, c0, tuple(c[:2] for c in cells), self.gut)
        return self.cached(index, key, lambda: self.finish(
            self.gutter_segments(label, pal.heading)
            + self.owner_segments(cells, gv.selected_serial, ("gil", row.pid, row.interp), c0)))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.scroll_offset.y + offset.y
        rows = self.gv.rows
        if index >= len(rows):
            return
        row = rows[index]
        t = self.time_at(offset.x)
        if row.kind == "thread" and row.series is not None:
            self.post_message(ThreadClicked(row.series.tid, t))
        elif row.pid is not None and t is not None:
            gs = self.model.gils.get(row.pid) if row.kind == "proc" else self.model.interp_gils.get((row.pid, row.interp))
            if gs is None:
                return
            cell = t // self.view.zoom
            (kind, serial, *_), = self.model.gil_cells(gs, self.view.zoom, cell, cell)
            if serial:
                self.post_message(ThreadClicked(self.model.order[serial - 1].tid, t))

    def scroll_to_row(self, index: int) -> None:
        height = self.scrollable_content_region.height
        top = self.scroll_offset.y
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)


_NICE_STEPS = [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
               5_000_000, 10_000_000, 15_000_000, 30_000_000, 60_000_000, 120_000_000, 300_000_000, 600_000_000,
               1_800_000_000, 3_600_000_000]


def time_label(t: int, step: int) -> str:
    s = t / 1e6
    if step >= 60_000_000:
        return f"{int(s // 60)}m{int(s % 60):02d}s" if s % 60 else f"{int(s // 60)}m"
    if step >= 1_000_000:
        return f"{s:.0f}s"
    if step >= 100_000:
        return f"{s:.1f}s"
    if step >= 10_000:
        return f"{s:.2f}s"
    return f"{s:.3f}s"


class TimeAxis(Painter):
    """Seconds since the start under the lanes, and the zoom in the gutter."""

    DEFAULT_CSS = """
    TimeAxis { height: 1; overflow-y: hidden; }
    """

    def refresh_lanes(self) -> None:
        self.new_frame()
        self.set_rows(1)
        self.refresh_changed()

    def paint_line(self, y: int) -> Strip:
        pal = self.pal
        if y > 0:
            return Strip.blank(self.line_width, pal.base)
        c0, c1 = self.window()
        zoom = self.view.zoom
        width = c1 - c0 + 1
        step = next((s for s in _NICE_STEPS if s / zoom >= 11), _NICE_STEPS[-1])
        chars = ["─"] * width
        first = -(-c0 * zoom // step) * step
        t = first
        while t <= c1 * zoom + zoom - 1:
            x = t // zoom - c0
            if 0 <= x < width:
                chars[x] = "┴"
                label = time_label(t, step)
                for k, ch in enumerate(label):
                    if x + 1 + k < width:
                        chars[x + 1 + k] = ch
            t += step
        gutter = fit(f" {fmt_zoom(zoom)}", self.gut)
        key = (gutter, "".join(chars))
        return self.cached(0, key, lambda: self.finish(
            [Segment(gutter, pal.axis), Segment("┼", pal.axis), Segment(key[1], pal.axis)]))


class Legend(Painter):
    """What each glyph and colour means."""

    DEFAULT_CSS = """
    Legend { height: auto; overflow-y: hidden; scrollbar-gutter: auto; }
    """

    def refresh_lanes(self) -> None:
        self.new_frame()
        rows = len(self._lines())
        grown = rows != self.virtual_size.height  # (an item came or went: its height is auto)
        self.set_rows(rows)
        self.refresh(layout=grown)

    def _lines(self, width: int | None = None) -> list[list[Segment]]:
        pal = self.pal
        width = max(20, width or self.line_width)
        if getattr(self.gv, "presenter", False):
            return self._big_lines(width)
        long = width >= 130
        items: list[list[Segment]] = []
        for code in range(8):
            name = theme.LABELS[code][0] if long else theme.SHORT_LABELS[code]
            if long and code == 2:
                name = "GIL wait"
            glyphs = theme.GLYPHS[code] * (2 if long else 1)
            items.append([Segment(glyphs, pal.state[code]), Segment(" " + name, pal.gutter)])
        items.append([Segment("░" * (2 if long else 1), pal.state[2] + _UNDERLINE),
                      Segment(" underlined: held GIL" if long else " held GIL", pal.gutter)])
        if self.unsplit_shown():  # only while the lanes show some: the usual legend stays as it was
            items.append([Segment(theme.UNSPLIT_GLYPH * (2 if long else 1), pal.unsplit),
                          Segment(" " + (theme.UNSPLIT_LABEL[1] if long else theme.UNSPLIT_LABEL[0]), pal.gutter)])
        if width >= 100:  # the cores' own marks (the help has them too)
            items.append([Segment("A", pal.thread_letter[0]), Segment("██" if long else "█", pal.thread[0]),
                          Segment(" thread on a core" if long else " on core", pal.gutter)])
            items.append([Segment("░░" if long else "░", pal.others),
                          Segment(" other processes" if long else " others", pal.gutter)])
        sep = 2 if long else 1
        lines: list[list[Segment]] = [[]]
        used = 0
        for item in items:
            n = sum(len(s.text) for s in item) + sep
            if used and used + n > width:
                lines.append([])
                used = 0
            lines[-1].extend([Segment(" " * sep, pal.base)] + item)
            used += n
        return lines

    def _big_lines(self, width: int) -> list[list[Segment]]:
        """For a room: each state's glyph in a wide block, its name, and what it means, two a line."""
        pal = self.pal
        items = []
        for code in range(8):
            name, what = theme.LABELS[code]
            items.append([Segment(theme.GLYPHS[code] * 4, pal.state[code]), Segment(f" {name}", pal.heading),
                          Segment(f" — {what}", pal.gutter)])
        items.append([Segment("░" * 4, pal.state[2] + _UNDERLINE), Segment(" underlined", pal.heading),
                      Segment(" — the thread held the GIL", pal.gutter)])
        if self.unsplit_shown():
            name, what = theme.UNSPLIT_LABEL
            items.append([Segment(theme.UNSPLIT_GLYPH * 4, pal.unsplit), Segment(f" {name}", pal.heading),
                          Segment(f" — {what}", pal.gutter)])
        column = max(sum(len(seg.text) for seg in item) for item in items) + 4
        per_line = max(1, width // column)
        lines: list[list[Segment]] = []
        for i in range(0, len(items), per_line):
            line: list[Segment] = []
            for item in items[i : i + per_line]:
                used = sum(len(seg.text) for seg in item)
                line += [Segment("  ", pal.base), *item, Segment(" " * (column - used - 2), pal.base)]
            lines.append(line)
        return lines

    def unsplit_shown(self) -> bool:
        """Whether a lane shows time on a CPU that no GIL sample split (in a comparison: either run's)."""
        return any(t.figures.unsplit_shown for t in getattr(self.app, "timelines", None) or [self.gv])

    def render_line(self, y: int) -> Strip:
        key = ("legend", id(self.pal), getattr(self.gv, "presenter", False), self.unsplit_shown())
        return self.cached(y, key, lambda: self._line(y))

    def _line(self, y: int) -> Strip:
        lines = self._lines()
        if y >= len(lines):
            return Strip.blank(self.line_width, self.pal.base)
        return self.finish(lines[y])

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self._lines(width)))


class ThreadTable(Painter):
    """Threads with their figures over the time shown, in the lanes' order; click to select."""

    DEFAULT_CSS = """
    ThreadTable { height: 1fr; }
    """

    def refresh_lanes(self) -> None:
        self.new_frame()
        self.set_rows(len(self.gv.table_rows) + 1)
        self.refresh()

    def _columns(self) -> list[tuple[str, int, str]]:
        width = self.line_width
        cols = [("", 2, "l"), ("name", 14 if width >= 100 else 10, "l"), ("tid", 7, "r"), ("state", 10, "l"),
                ("run", 5, "r")]
        if width >= 100:
            cols.append(("native", 7, "r"))
        cols += [("wait", 5, "r")]
        if width >= 100:
            cols.append(("runq", 5, "r"))
        cols += [("block", 6, "r"), ("cpu s", 7, "r")]
        used = sum(c[1] + 1 for c in cols)
        cols.append(("line", max(4, width - used - 1), "l"))
        return cols

    def render_line(self, y: int) -> Strip:
        pal = self.pal
        cols = self._columns()
        gv = self.gv
        if y == 0:
            segs = []
            for name, w, align in cols:
                title = name
                if name == {"name": "name", "cpu": "cpu s", "waiting": "wait", "state": "state"}.get(gv.view.sort):
                    title = name + "▼"
                if name == "line":
                    title = "line"
                    if gv.table_note and w >= 40:
                        title = fit(title, w - len(gv.table_note) - 12) + f"figures over {gv.table_note}"
                segs.append(Segment((fit(title, w) if align == "l" else rfit(title, w)) + " ", pal.heading))
            return self.finish(segs, pal.base)
        index = self.scroll_offset.y + y - 1
        rows = gv.table_rows
        if index >= len(rows) or index < 0:
            return Strip.blank(self.line_width, pal.base)
        s, st, line = rows[index]
        selected = gv.view.selected == s.tid
        key = (s.name, selected, st, line, self.line_width)

        def build() -> Strip:
            segs = []
            i = s.serial % PALETTE_SIZE
            base = pal.gutter_selected if selected else pal.gutter
            code = CODE_NAMES.index(st.state) if st.state in CODE_NAMES else GONE
            state = st.state if st.state != "waiting" else "GIL wait"
            glyph, state_style = (theme.GLYPHS[code] if code != GONE else " "), pal.state[code]
            if st.unsplit_now:
                glyph, state_style, state = theme.UNSPLIT_GLYPH, pal.unsplit, theme.UNSPLIT_LABEL[0]
            values = {
                "name": s.name,
                "tid": str(s.tid),
                # (at most, where what no GIL sample split could change the figure shown: part may be C)
                "run": ("≤" if st.unsplit >= 0.005 else "") + pct(st.running),
                "native": pct(st.native),
                "wait": pct(st.waiting),
                "runq": pct(st.runnable),
                "block": pct(st.blocked),
                "cpu s": f"{st.cpu_s:.2f}",
                "line": line,
            }
            for name, w, align in cols:
                if name == "":
                    segs.append(Segment(s.letter, pal.thread_letter[i]))
                    segs.append(Segment(" " * (w - 1) + " ", base))
                elif name == "state":
                    segs.append(Segment(glyph + " ", state_style + (pal.selected_row if selected else Style())))
                    segs.append(Segment(fit(state, w - 2) + " ", base))
                else:
                    text = values[name]
                    segs.append(Segment((fit(text, w) if align == "l" else rfit(text, w)) + " ", base))
            return self.finish(segs, base)

        return self.cached(index, key, build)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y == 0:
            return
        index = self.scroll_offset.y + offset.y - 1
        rows = self.gv.table_rows
        if 0 <= index < len(rows):
            self.post_message(ThreadClicked(rows[index][0].tid, None))

    def scroll_to_row(self, index: int) -> None:
        height = self.scrollable_content_region.height - 1
        top = self.scroll_offset.y
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)


__all__ = ["CoreLanes", "GilLanes", "ThreadLanes", "TimeAxis", "Legend", "ThreadTable", "ThreadClicked", "fit", "pct",
           "time_label"]


class WorkLanes(Painter):
    """Work done per second by each run compared, on the time axis they share: one lane each."""

    DEFAULT_CSS = """
    WorkLanes { height: 2; overflow-y: hidden; }
    """

    def __init__(self, timelines: list, names: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timelines = timelines
        self.names = names
        self._gv = timelines[0]  # the time axis, gutter and zoom are the first run's (and so the shared)

    def refresh_lanes(self) -> None:
        self.new_frame()
        self.set_rows(len(self.timelines))
        self.refresh_changed()

    def paint_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        if index >= len(self.timelines):
            return Strip.blank(self.line_width, self.pal.base)
        c0, c1 = self.window()
        zoom = self.view.zoom
        rates = [tl.model.work_rates(zoom, c0, c1) for tl in self.timelines]
        scale = nice_ceiling(max((r for lane in rates for r in lane), default=0.0))
        model = self.timelines[index].model
        unit = (model.progress.unit or "work") if model.progress is not None else "work"
        label = f"{self.names[index]} {unit}/s"
        return self.finish(self.gutter_segments(label, self.pal.gutter)
                           + self.spark_segments(rates[index], self.pal.thread[index % PALETTE_SIZE], scale))


class LinesPane(Static):
    """The lines that held the GIL and those that waited for it; a click picks one (again: none)."""

    class Picked(Message):
        def __init__(self, line: int) -> None:
            super().__init__()
            self.line = line

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.row_lines: list[list[int]] = []  # per row of text: the line id in each column (0: none)

    def on_click(self, event: events.Click) -> None:
        row = event.y - self.styles.padding.top
        if 0 <= row < len(self.row_lines):
            ids = self.row_lines[row]
            line = ids[0] if event.x < self.size.width // 2 or len(set(ids)) == 1 else ids[1]
            if line:
                self.post_message(self.Picked(line))
