"""Help, and the picker for another scenario or target."""

from __future__ import annotations

import shlex

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ..stream import State
from . import catalog, theme

KEYS = [
    ("space", "pause / resume (live keeps sampling while paused)"),
    ("← →", "scroll back / forward in time (pauses)"),
    ("shift+← →", "scroll a whole screen"),
    ("home", "go to the start of the run"),
    ("0", "zoom to fit the whole run"),
    ("f  end", "follow the newest samples"),
    (",  .", "one tick back / forward (a paused replay plays exactly one more)"),
    ("[  ]", "replay slower / faster: 0.1x to 10x"),
    ("j", "jump to a time"),
    ("l", "loop the replay"),
    ("p", "presenter layout: the point, the GIL, the threads, a big legend; p again to leave"),
    ("+  -", "zoom in / out (1 ms to 1 s per cell)"),
    ("↑ ↓", "select the previous / next thread"),
    ("click", "select a thread in any lane: highlight it, show its stack"),
    ("esc", "clear the selection"),
    ("s", "sort the threads (start order, name, CPU, GIL wait, state)"),
    ("g", "thread lanes grouped by process, or flat"),
    ("c  i  d  o", "show / hide the cores, GIL, table, output panes"),
    ("w", "lines: which held the GIL, which waited for it, over the time shown"),
    ("r", "restart the workload (a replay starts over)"),
    ("n", "pick another scenario or target"),
    ("t", "theme: dark, light, high contrast"),
    ("ctrl+s", "save a screenshot (SVG)"),
    ("ctrl+p", "command palette"),
    ("?", "this help"),
    ("q", "quit"),
]


def help_text(colors: dict[str, str] | None = None) -> Text:
    colors = colors or {}
    text = Text()
    text.append("gilviz: what every thread of a Python program is doing, on which core, and who holds the GIL\n\n",
                style="bold")
    text.append("Keys\n", style="bold underline")
    for key, what in KEYS:
        text.append(f"  {key:<12}", style="bold")
        text.append(f"{what}\n")
    text.append("\nStates (one glyph and one colour each)\n", style="bold underline")
    unsplit = (theme.UNSPLIT_GLYPH, "unsplit", *theme.UNSPLIT_LABEL)
    for glyph, key, name, what in [*((theme.GLYPHS[s], s.key, *theme.LABELS[s]) for s in State), unsplit]:
        color = colors.get(f"gv-{key}")
        text.append(f"  {glyph * 3}  ", style=f"bold {color}" if color else "bold")
        text.append(f"{name:<9}", style="bold")
        text.append(f"{what}\n")
    text.append("               (its GIL not located yet, or lost; or not sampled that tick): counted as\n"
                "               running in the figures, the table says ≤ run%\n")
    text.append("       gone     not started, or ended\n")
    text.append("  underlined: the thread held the GIL for at least half of that cell\n")
    text.append("\nLanes\n", style="bold underline")
    text.append("  cpuN         which thread of the target ran on each core (its letter starts each run);\n"
                "               ░ other processes, ▄ partly busy, blank idle. In the gutter, cpu0 41% +21%:\n"
                "               the target used 41% of the core over the time shown, other processes 21%\n"
                "  GIL held by  the thread that held the GIL; then held %, contended % (someone waiting),\n"
                "               and hand-offs per second, per cell\n"
                "  threads      one lane per thread; the table below gives its figures over the time shown,\n"
                "               and the Python line it was on (read from the target's memory at every tick)\n")
    text.append("\nA cell sums every sample that falls in it: its glyph is the state that took most of its time.\n")
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 100; max-width: 95%; height: auto; max-height: 90%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        try:
            colors = self.app.get_css_variables()
        except Exception:  # colours are a nicety here; the glyphs say it all
            colors = {}
        with VerticalScroll():
            yield Static(help_text(colors))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class PickScreen(ModalScreen[list]):
    """A built-in scenario, or any target: script.py args, -m MODULE, -c CODE, --pid PID."""

    BINDINGS = [Binding("escape,q", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PickScreen { align: center middle; }
    PickScreen > Vertical {
        width: 110; max-width: 96%; height: auto; max-height: 90%;
        border: round $primary; background: $surface; padding: 0 1; overflow: hidden;
    }
    PickScreen #pick-lists { height: auto; max-height: 20; }
    PickScreen OptionList { width: 1fr; height: auto; max-height: 20; }
    PickScreen #pick-about { width: 2fr; height: auto; padding: 0 1; }
    PickScreen Input { margin-top: 1; width: 100%; }
    PickScreen .hint { color: $text-muted; }
    """

    def __init__(self, current: str | None = None) -> None:
        super().__init__()
        self.scenarios = catalog.all_scenarios()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("[b]Run another scenario or target[/b]")
            if self.scenarios:
                with Horizontal(id="pick-lists"):
                    yield OptionList(*[Option(s.name, id=s.name) for s in self.scenarios], id="pick-list")
                    yield Static("", id="pick-about")
            else:
                yield Static("No built-in scenarios in this install.", classes="hint")
            yield Input(placeholder="or a target: script.py ARGS  |  -m MODULE  |  -c CODE  |  --pid PID",
                        id="pick-input")
            yield Static("enter: run   esc: cancel   (gilviz's options stay as given on the command line)",
                         classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False
        if self.scenarios:
            options = self.query_one(OptionList)
            names = [s.name for s in self.scenarios]
            options.highlighted = names.index(self.current) if self.current in names else 0
            options.focus()
        else:
            self.query_one(Input).focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        s = catalog.find(event.option.id)
        if s is None:
            return
        text = Text()
        text.append(f"{s.name}\n", style="bold")
        text.append(catalog.text_of(s, "summary") + "\n\n")
        explanation = catalog.text_of(s, "explanation")
        if explanation:
            text.append(explanation + "\n\n")
        look = catalog.text_of(s, "look_for")
        if look:
            text.append("Look for: ", style="bold")
            text.append(look)
        self.query_one("#pick-about", Static).update(text)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss([event.option.id])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value:
            return
        try:
            self.dismiss(shlex.split(value))
        except ValueError as e:
            self.notify(f"cannot read that target: {e}", severity="error")

    def action_cancel(self) -> None:
        self.dismiss(None)


class JumpScreen(ModalScreen[int | None]):
    """Asks for a time to jump to, in seconds since the start."""

    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]
    DEFAULT_CSS = """
    JumpScreen { align: center middle; }
    JumpScreen > Vertical { width: 50; height: auto; border: round $primary; background: $surface; padding: 0 1; }
    """

    def __init__(self, last_s: float) -> None:
        super().__init__()
        self.last_s = last_s

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Jump to a time, in seconds since the start (0 to {self.last_s:.1f} here so far):")
            yield Input(placeholder="e.g. 2.5", id="jump-input")
            yield Static("", id="jump-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            seconds = float(event.value.strip())
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < 1e7:
            self.query_one("#jump-error", Static).update("a number of seconds, 0 or more")
            return
        self.dismiss(int(seconds * 1e6))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
