"""What a view shows beside its cells, computed from the timeline and the view alone.

Pure functions, no Textual: the header line, the GIL panel's figures, the core gutters, the
thread table and the explanation pane, as plain data (text with style names), so they are
tested without an app and the widgets only draw them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .store import History, ThreadSeries, ThreadStats, core_share, fmt_duration, fmt_zoom
from .view import Row, View, build_rows

Spans = list[tuple[str, str]]  # (text, style): the style a Rich style string ("bold", "italic", "")


def pct(x: float) -> str:
    if x <= 0:
        return "0%"
    if x < 0.005:
        return "<1%"
    return f"{x * 100:.0f}%"


def fit_text(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def nice_ceiling(x: float) -> float:
    """A round number at or above x, for the scale of a sparkline."""
    if x <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(x)))
    for m in (0.1, 0.2, 0.25, 0.5, 1.0):
        if x <= m * magnitude:
            return m * magnitude
    return magnitude


def spans_length(spans: Spans) -> int:
    return sum(len(text) for text, _ in spans)


@dataclass
class Figures:
    """Everything beside the cells that sums over the time shown."""

    rows: list[Row] = field(default_factory=list)
    table_rows: list[tuple[ThreadSeries, ThreadStats, str]] = field(default_factory=list)
    table_note: str = ""
    gil_pid: int | None = None
    gil_labels: list[str] = field(default_factory=lambda: ["GIL held by", "held", "contended", "hand-offs"])
    gil_figures: dict[str, Any] | None = None
    core_labels: dict[int, str] = field(default_factory=dict)
    others_cores: float = 0.0  # cores other processes took, on average
    wanting_cores: float = 0.0  # threads of the target waiting for a core, on average
    unsplit_shown: bool = False  # a lane draws time on a CPU that no GIL sample split


def figures(model: History, view: View, cells: int, gutter_width: int) -> Figures:
    t0, t1 = view.time_window(model, cells)
    stats = {s.tid: model.thread_stats(s, t0, t1) for s in model.order}
    if model.end is not None and t1 >= model.t_last:
        for st in stats.values():  # the run is over: whatever a thread did last, it is gone now
            st.state, st.unsplit_now = "gone", False
    out = Figures(rows=build_rows(model, stats, view))
    if any(st.unsplit for st in stats.values()):  # drawn in a lane: the legend says what it is
        c0, c1 = view.window(model, cells)
        out.unsplit_shown = any(model.unsplit_running_cells(r.series, view.zoom, c0, c1) is not None
                                for r in out.rows if r.kind == "thread" and r.series is not None
                                and stats[r.series.tid].unsplit)
    out.table_rows = [(r.series, stats[r.series.tid], model.line_at(r.series.tid, t1))
                      for r in out.rows if r.kind == "thread" and r.series is not None]
    out.table_note = f"{t0 / 1e6:.2f}–{t1 / 1e6:.2f} s" if t1 > t0 else ""
    # the GIL lanes follow the selected thread's process, else the target's
    pid = None
    sel = model.threads.get(view.selected) if view.selected is not None else None
    if sel is not None and sel.pid in model.gils:
        pid = sel.pid
    elif model.root_pid in model.gils or model.root_pid in model.processes:
        pid = model.root_pid
    elif model.gils:
        pid = next(iter(model.gils))
    out.gil_pid = pid
    gil = model.gil_stats(pid, t0, t1) if pid is not None else None
    short = gutter_width < 18
    if gil:
        c0, c1 = view.window(model, cells)
        rates = [c[4] for c in model.gil_cells(model.gils[pid], view.zoom, c0, c1)]  # type: ignore[index]
        gil["handoff_scale"] = nice_ceiling(max(rates, default=0.0))
        out.gil_labels = [
            "GIL held by" if not short else "GIL holder",
            f"held {pct(gil['held'])}",
            f"contended {pct(gil['contended'])}" if not short else f"contend {pct(gil['contended'])}",
            f"hand-offs {gil['handoffs_per_s']:.0f}/s" if not short else f"{gil['handoffs_per_s']:.0f} swaps/s",
        ]
    else:
        out.gil_labels = ["GIL", "", "", ""]
    if len(model.processes) > 1 and pid is not None and not short:
        out.gil_labels[0] = f"GIL {pid}"
    out.gil_figures = gil
    out.wanting_cores = sum(st.runnable * st.life for st in stats.values()) / max(1, t1 - t0)
    for core in model.cores:
        target, other = core_share(model, core, t0, t1)
        out.others_cores += other
        label = f"cpu{core.cpu}"
        room = gutter_width - len(label) - 1
        figure = pct(target)
        if room >= 10 and other >= 0.01:
            figure += f" +{pct(other)}"
        out.core_labels[core.cpu] = label + " " * max(1, room - len(figure)) + figure
    return out


@dataclass(frozen=True)
class SourceFacts:
    """What the header says of where the records come from."""

    label: str
    live: bool
    speed: float = 1.0  # a replay's
    scenario: str | None = None
    loop: bool = False  # a replay that starts over when it ends


def header(model: History, view: View, source: SourceFacts, ui_cost: float | None, width: int) -> tuple[Spans, int]:
    """The header's spans and the lines it needs: as much as fits in `width` (two lines at most)."""
    h = model.header
    head: Spans
    if model.ended:
        ended = "■ ENDED" if source.live or model.error else "■ REPLAYED"  # the run it shows ended long ago
        head = [(ended, "bold reverse" if model.error else "bold"), (f" ({model.describe_end() or 'ended'})", "")]
    elif view.paused:
        head = [("❚❚ PAUSED", "bold reverse")]
    elif not source.live:
        head = [(f"▶ REPLAY ×{source.speed:g}" if source.speed else "▶ REPLAY", "bold")]
    else:
        head = [("● LIVE", "bold")]
    if source.loop and not source.live:
        head.append((" ⟳", "bold"))
    if model.times:
        # as fine as a cell: zoomed to 1 ms, one step of a replay moves the clock too
        digits = 1 if view.zoom >= 10_000 else 3
        head.append((f" {model.t_last / 1e6:.{digits}f} s", "bold"))
    target = h.command or source.label
    if not source.live:
        target = f"{source.label}: {target}"
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
    idle_every = model.stats.idle_read_every if model.stats else None  # set when the budget reads them less

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
            if idle_every and level < 2:
                tick += f", idle threads 1 in {idle_every}"
            parts.append(tick)
        cost = []
        if sampler is not None:
            cost.append(f"sampler {sampler:.0%}" if level < 3 else f"{sampler:.0%}")
        if ui_cost is not None:
            cost.append(f"view {ui_cost:.0%}" if level < 3 else f"{ui_cost:.0%}")
        if cost:
            parts.append(("CPU: " + ", ".join(cost)) if level < 3 else ("CPU " + " + ".join(cost)))
        parts.append(fmt_zoom(view.zoom))
        return [p for p in parts if p]

    def richest(room: int) -> Spans | None:
        for level in range(4):
            spans = [*head, (" │ " + " │ ".join(build(level)), "")]
            if spans_length(spans) <= room:
                return spans
        return None

    # wide: one line, shortened as needed; where even the shortest does not fit, two lines in full
    spans = (richest(width) if width >= 118 else None) or richest(2 * width) or [
        *head, (" │ " + " │ ".join(build(3)), "")]
    return spans, 1 if spans_length(spans) <= width else 2


def lines_pane(model: History, view: View, cells: int, width: int, rows: int) -> tuple[Spans, list[list[int]]]:
    """The lines that held the GIL longest and those that waited for it longest, over the time
    shown (to the second), side by side where there is room; each with its threads' letters.
    Also the line id under each row of text (one per column; 0 for none), for clicks."""
    t0, t1 = view.time_window(model, cells)
    figures, rate, (start, end) = model.line_figures(t0, t1)  # by whole seconds (minutes, long ago)
    spans: Spans = [(f"Lines, {start / 1e6:.0f}–{end / 1e6:.3g} s", "bold")]
    if not figures:
        by = (model.stats.stacks_by if model.stats is not None else None)
        spans.append(("  no stack readings here" + ("" if by else " (--stacks-rate 0, no py-spy, or a recording from "
                                                            "before lines)") + "\n", "italic"))
        return spans, []
    by = model.stats.stacks_by if model.stats is not None and model.stats.stacks_by else "stack readings"
    spans.append(((f"  {rate:.0f} readings/s per thread ({by}) · a wait at a call is the GIL taken back as it "
                  "returns · click a line: where threads were on it")[: max(0, width - 14)] + "\n", "italic"))
    ids: list[list[int]] = [[0, 0]]
    side = width >= 110
    col = (width - 3) // 2 if side else width

    def table(key: str, title: str, n: int) -> list[tuple[str, int]]:
        best = sorted((f for f in figures if getattr(f, key) >= 0.005), key=lambda f: -getattr(f, key))
        out = [(f"{title:<{col - 14}}{'s':>6}  who", 0)]
        for f in best[: max(1, n)]:
            who = "".join(model.threads[t].letter for t in f.threads if t in model.threads)[:5]
            where = f"{f.where} {f.function}"[: col - 14]
            out.append((f"{where:<{col - 14}}{getattr(f, key):>6.2f}  {who}", f.id))
        return out

    def style(i: int, lid: int) -> str:
        return "bold" if i == 0 else "reverse" if lid and lid == view.selected_line else ""

    if side:
        held, waited = table("held_s", "held the GIL", rows - 1), table("waited_s", "waited for the GIL", rows - 1)
        held += [("", 0)] * (len(waited) - len(held))
        waited += [("", 0)] * (len(held) - len(waited))
        for i, ((a, la), (b, lb)) in enumerate(zip(held, waited)):
            spans += [(f"{a:<{col}}", style(i, la)), (" │ ", ""), (b, style(i, lb)), ("\n", "")]
            ids.append([la, lb])
    else:
        for part in (table("held_s", "held the GIL", rows // 2 - 1), table("waited_s", "waited for the GIL", rows // 2 - 1)):
            for i, (text, lid) in enumerate(part):
                spans += [(text, style(i, lid)), ("\n", "")]
                ids.append([lid, lid])
    return spans, ids


def info(model: History, view: View, cells: int, source: SourceFacts, scenario: Any | None,
         text_of=lambda scenario, name: getattr(scenario, name, "")) -> tuple[Spans, str]:
    """The explanation pane: the selected thread's stack, or the scenario's point; the work done,
    the result, how the run ended. Also the one line that stands for it where there is no room."""
    spans: Spans = []
    stack_line = ""
    sel = model.threads.get(view.selected) if view.selected is not None else None
    t0, t1 = view.time_window(model, cells)
    if sel is not None:
        spans += [(f"{sel.letter} ", "reverse bold"), (sel.name, "bold"),
                  (f"  tid {sel.tid}" + (f" · pid {sel.pid}" if sel.pid else "") + "\n", "")]
        at = view.selected_t if view.selected_t is not None else t1
        found = model.stack_at(sel.tid, at)
        if found:
            t, entry = found
            flags = (["held the GIL"] if entry.owns_gil else []) + ([] if entry.active else ["idle"])
            spans.append((f"stack at {t / 1e6:.2f} s" + (f" ({', '.join(flags)})" if flags else "") + ":\n", "italic"))
            spans += [(f"  {frame}\n", "") for frame in entry.frames or [entry.line]]
        else:
            spans.append(("no stack yet (whole stacks are read a few times a second)\n", "italic"))
        line = " ← ".join(found[1].frames[:4]) if found else ""
        stack_line = f"{sel.letter} {sel.name}: {line or 'no stack yet'}"
    picked = model.line_names.get(view.selected_line) if view.selected_line is not None else None
    if picked is not None:
        figures, _, (a, b) = model.line_figures(t0, t1)
        f = next((f for f in figures if f.id == picked.id), None)
        spans += [("Line picked: ", "bold"), (f"{picked.file}:{picked.line} {picked.function}\n", "")]
        if f is not None:
            who = ", ".join(f"{model.threads[t].letter} {model.threads[t].name}" for t in f.threads if t in model.threads)
            spans.append((f"{a / 1e6:.0f}–{b / 1e6:.3g} s: held the GIL {f.held_s:.2f} s, waited {f.waited_s:.2f} s, "
                          f"native {f.native_s:.2f} s, blocked {f.blocked_s:.2f} s; {who}\n", ""))
        else:
            spans.append(("no thread was on it in the time shown\n", "italic"))
    elif sel is None:
        if scenario is not None:
            spans += [(f"{scenario.name}: ", "bold"), (text_of(scenario, "summary") + "\n", "")]
            look = text_of(scenario, "look_for")
            if look:
                spans += [("Look for: ", "bold"), (look + "\n", "")]
        spans.append(("Click a thread, or ↑ ↓, to see its stack.\n", "italic"))
    if t1 > t0:
        spans.append((f"\nFigures below: {t0 / 1e6:.2f}–{t1 / 1e6:.2f} s, the time shown.\n", "italic"))
    progress = model.progress
    if progress is not None and progress.done is not None:
        first = model.first_progress or progress
        span = (progress.t - first.t) / 1e6
        rate = (progress.done - (first.done or 0)) / span if span > 0 else 0.0
        spans.append((f"\nwork: {_number(progress.done)} {progress.unit or ''}", "bold"))
        if rate:
            spans.append((f" ({rate:.0f}/s)", ""))
        spans.append(("\n", ""))
    if model.results:
        spans.append(("result: " + ", ".join(f"{k} {v}" for k, v in model.results.items()) + "\n", ""))
    how = model.describe_end()
    if how:
        spans.append((f"\nThe run ended: {how}.", "bold"))
        if model.end and model.end.sampler_wall_s:
            spans.append((f" {model.end.sampler_wall_s:.1f} s sampled.", ""))
        spans.append((" Scroll back with ← → and zoom with + -.\n", ""))
    elif view.paused:
        spans.append(("\nPaused: ← → scroll, space or f resumes.\n", ""))
    return spans, stack_line


def empty_message(model: History, source: SourceFacts) -> str:
    """What the thread lanes say while they have no thread to show."""
    if model.error:
        return model.error
    if model.ended:
        return "the target ended before any thread was sampled"
    return f"starting {source.label}…"


@dataclass(frozen=True)
class Outcome:
    """What the run has to show for itself: its work, its scenario's result, and whether the
    machine was too busy for the picture to be the GIL's alone."""

    work: str = ""  # the work done, and how fast
    result: str = ""  # the scenario's result (so far)
    big: str | None = None  # the result's figure, in large type once the run has ended
    caption: str = ""  # what the big figure is
    warning: str = ""

    @property
    def line(self) -> str:
        """One line, always on screen while there is something to say."""
        return " · ".join(p for p in (self.work, self.result) if p)

    @property
    def sentence(self) -> str:
        """The outcome, printed after the screen is gone: the headline where the result does
        not already say it, the result, the work."""
        head = f"{self.caption}: {self.big}" if self.big and self.big not in self.result else ""
        return " · ".join(p for p in (head, self.result, self.work) if p)


BUSY_OTHERS_CORES = 0.2  # other processes taking this much of a core the target wanted: say so


def _number(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.3g}"


def result_text(result: dict[str, Any], final: bool) -> tuple[str, str | None, str]:
    """A scenario's result as a line, and its headline figure with a caption (or None)."""
    so_far = "" if final else " so far"
    if "lost" in result and "expected" in result:
        lost, expected = result["lost"], result["expected"]
        share = f" ({lost / expected:.0%})" if expected else ""
        return (f"lost {_number(lost)} of {_number(expected)} updates{share}{so_far}", f"{lost:,}",
                f"updates lost, of {_number(expected)}{share}")
    rates = [(str(k), v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(rates) == len(result) and rates:
        line = "; ".join(f"{k}: {_number(v)}" for k, v in rates)
        if len(rates) >= 2 and rates[-1][1] and all("/s" in k for k, _ in rates):  # phases' rates
            (first, a), (last, b) = rates[0], rates[-1]
            ratio = a / b
            return (f"{line}{so_far}", f"{ratio:.1f}x", f"{first} ({_number(a)}) over {last} ({_number(b)})")
        return line + so_far, None, ""
    return ", ".join(f"{k} {v}" for k, v in result.items()) + so_far, None, ""


def outcome(model: History, figures: Figures, own_cores: float = 0.0) -> Outcome:
    """own_cores: what gilviz itself took (its sampler, and a live view), which is no other process."""
    work = ""
    progress = model.progress
    if progress is not None and progress.done is not None:
        rate = model.work_rate()
        work = f"work: {_number(progress.done)} {progress.unit or ''}" + (f" ({_number(rate)}/s)" if rate else "")
    result, big, caption = "", None, ""
    if model.results:
        final = bool(progress is not None and progress.final) or model.end is not None
        result, big, caption = result_text(model.results, final)
        if model.end is None:
            big = None  # large type is for the end of the run
    warning = ""
    sampler = model.stats.overhead if model.stats is not None else 0.0
    could_use = min(figures.others_cores - sampler - own_cores, figures.wanting_cores)
    if could_use > BUSY_OTHERS_CORES:
        warning = (f"⚠ other processes took {could_use:.1f} of a core while the target waited for one: "
                   "this shows a busy machine, not only the GIL")
    return Outcome(work, result, big, caption, warning)


@dataclass(frozen=True)
class Comparison:
    """Two runs' work per second, and how many times one does the other's."""

    rates: list[float | None]
    units: list[str]
    big: str | None = None  # "1.9x", when both count the same unit
    caption: str = ""
    note: str = ""


def comparison(models: list[History], labels: list[str], together: bool) -> Comparison:
    rates = [m.work_rate() for m in models]
    units = [(m.progress.unit or "") if m.progress is not None else "" for m in models]
    ncpu = max((m.header.cpus or 0) for m in models)
    note = (f"run together: they shared the {ncpu or 'same'} cores" if together
            else "run one after the other, each from 0 s")
    if len(rates) == 2 and all(r for r in rates) and units[0] == units[1]:
        fast = 0 if rates[0] >= rates[1] else 1  # type: ignore[operator]
        ratio = rates[fast] / rates[1 - fast]  # type: ignore[operator]
        caption = f"{labels[fast]}: {ratio:.1f}x the {units[0]} per second of {labels[1 - fast]}"
        return Comparison(rates, units, f"{ratio:.1f}x", caption, note)
    if len(rates) == 2 and all(r for r in rates):
        return Comparison(rates, units, None, "they count different work: no ratio", note)
    return Comparison(rates, units, None, "", note)
