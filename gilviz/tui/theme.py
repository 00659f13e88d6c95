"""Glyphs, colours and themes: each state has a colour AND a glyph, so that a projector,
a colour-blind viewer or NO_COLOR still tells the states apart."""

from __future__ import annotations

from textual.theme import Theme

from ..stream import STATE_KEYS
from ..timeline.store import GONE, IO, LOCK, NATIVE, OTHER, PALETTE_SIZE, RUNNABLE, RUNNING, SLEEP, WAITING

GLYPHS = {
    RUNNING: "█",
    NATIVE: "▓",
    WAITING: "░",
    RUNNABLE: "▒",
    SLEEP: "·",
    IO: "≈",
    LOCK: "#",
    OTHER: "?",
    GONE: " ",
}
GLYPH_LIST = [GLYPHS[i] for i in range(9)]

LABELS = {
    RUNNING: ("running", "running Python, holds the GIL"),
    NATIVE: ("native", "on a CPU in C code, GIL released"),
    WAITING: ("waiting", "wants the GIL"),
    RUNNABLE: ("runnable", "wants a CPU, none free"),
    SLEEP: ("sleep", "blocked: sleeping"),
    IO: ("I/O", "blocked: I/O"),
    LOCK: ("lock", "blocked: a lock, join or queue"),
    OTHER: ("other", "blocked: another syscall, or stopped"),
}
SHORT_LABELS = {
    RUNNING: "run",
    NATIVE: "native",
    WAITING: "GIL wait",
    RUNNABLE: "runnable",
    SLEEP: "sleep",
    IO: "I/O",
    LOCK: "lock",
    OTHER: "other",
}
STATE_CLASSES = [*(f"gv--{key}" for key in STATE_KEYS), "gv--gone"]  # by cell code
THREAD_CLASSES = [f"gv--t{i}" for i in range(PALETTE_SIZE)]
SPARKS = " ▁▂▃▄▅▆▇█"
PARTLY_GLYPH = "▄"
OTHERS_GLYPH = "░"
# on a CPU where no GIL sample split the time (GIL not located, or not sampled that tick): running
# Python or C code, unknown which; drawn apart from "running", never as it
UNSPLIT_GLYPH = "▚"
UNSPLIT_LABEL = ("on CPU", "on a CPU, GIL not read: Python or C")
UNKNOWN_GLYPH = "╌"  # a GIL cell without samples (not "?", which is the "blocked: other" state's glyph)

COMPONENT_CLASSES = {
    *STATE_CLASSES,
    *THREAD_CLASSES,
    "gv--gutter",
    "gv--gutter-selected",
    "gv--selected",
    "gv--selected-row",
    "gv--others",
    "gv--unsplit",
    "gv--muted",
    "gv--axis",
    "gv--spark-held",
    "gv--spark-contended",
    "gv--spark-handoffs",
    "gv--heading",
    "gv--value",
}



def component_css(widget: str) -> str:
    """The rules mapping component classes to theme variables, for one widget type."""
    rules = [f"{widget} > .gv--{name} {{ color: $gv-{name}; }}" for name in STATE_KEYS]
    rules.append(f"{widget} > .gv--gone {{ color: $gv-muted; }}")
    rules += [f"{widget} > .gv--t{i} {{ color: $gv-t{i}; }}" for i in range(PALETTE_SIZE)]
    rules += [
        f"{widget} > .gv--gutter {{ color: $foreground; }}",
        f"{widget} > .gv--gutter-selected {{ color: $gv-selected-fg; background: $gv-selected-bg; text-style: bold; }}",
        f"{widget} > .gv--selected {{ color: $gv-selected-bg; text-style: bold; }}",
        f"{widget} > .gv--selected-row {{ background: $gv-selected-row; }}",
        f"{widget} > .gv--others {{ color: $gv-others; }}",
        f"{widget} > .gv--unsplit {{ color: $gv-unsplit; }}",
        f"{widget} > .gv--muted {{ color: $gv-muted; }}",
        f"{widget} > .gv--axis {{ color: $gv-axis; }}",
        f"{widget} > .gv--spark-held {{ color: $gv-spark-held; }}",
        f"{widget} > .gv--spark-contended {{ color: $gv-waiting; }}",
        f"{widget} > .gv--spark-handoffs {{ color: $gv-spark-handoffs; }}",
        f"{widget} > .gv--heading {{ color: $gv-heading; text-style: bold; }}",
        f"{widget} > .gv--value {{ color: $foreground; text-style: bold; }}",
    ]
    return "\n".join(rules)


DARK_VARS = {
    "gv-running": "#4ade80",
    "gv-native": "#38bdf8",
    "gv-waiting": "#f87171",
    "gv-runnable": "#facc15",
    "gv-sleep": "#7c8aa5",
    "gv-io": "#c084fc",
    "gv-lock": "#fb923c",
    "gv-other": "#94a3b8",
    "gv-others": "#64748b",
    "gv-unsplit": "#bbf7d0",
    "gv-muted": "#5b6475",
    "gv-axis": "#8b95a7",
    "gv-heading": "#e2e8f0",
    "gv-spark-held": "#4ade80",
    "gv-spark-handoffs": "#38bdf8",
    "gv-selected-bg": "#f8fafc",
    "gv-selected-fg": "#0f172a",
    "gv-selected-row": "#1e293b",
    "gv-t0": "#60a5fa",
    "gv-t1": "#f59e0b",
    "gv-t2": "#34d399",
    "gv-t3": "#f472b6",
    "gv-t4": "#a78bfa",
    "gv-t5": "#22d3ee",
    "gv-t6": "#fb7185",
    "gv-t7": "#a3e635",
    "gv-t8": "#e879f9",
    "gv-t9": "#fde047",
    "gv-t10": "#2dd4bf",
    "gv-t11": "#f97316",
}

LIGHT_VARS = {
    "gv-running": "#15803d",
    "gv-native": "#0369a1",
    "gv-waiting": "#dc2626",
    "gv-runnable": "#a16207",
    "gv-sleep": "#64748b",
    "gv-io": "#7e22ce",
    "gv-lock": "#c2410c",
    "gv-other": "#475569",
    "gv-others": "#94a3b8",
    "gv-unsplit": "#0d9488",
    "gv-muted": "#94a3b8",
    "gv-axis": "#475569",
    "gv-heading": "#0f172a",
    "gv-spark-held": "#15803d",
    "gv-spark-handoffs": "#0369a1",
    "gv-selected-bg": "#0f172a",
    "gv-selected-fg": "#f8fafc",
    "gv-selected-row": "#e2e8f0",
    "gv-t0": "#1d4ed8",
    "gv-t1": "#b45309",
    "gv-t2": "#047857",
    "gv-t3": "#be185d",
    "gv-t4": "#6d28d9",
    "gv-t5": "#0e7490",
    "gv-t6": "#be123c",
    "gv-t7": "#4d7c0f",
    "gv-t8": "#a21caf",
    "gv-t9": "#854d0e",
    "gv-t10": "#0f766e",
    "gv-t11": "#c2410c",
}

CONTRAST_VARS = {
    "gv-running": "#00ff00",
    "gv-native": "#00ffff",
    "gv-waiting": "#ff3030",
    "gv-runnable": "#ffff00",
    "gv-sleep": "#b0b0ff",
    "gv-io": "#ff80ff",
    "gv-lock": "#ff9900",
    "gv-other": "#ffffff",
    "gv-others": "#a0a0a0",
    "gv-unsplit": "#c0ffc0",
    "gv-muted": "#a0a0a0",
    "gv-axis": "#ffffff",
    "gv-heading": "#ffffff",
    "gv-spark-held": "#00ff00",
    "gv-spark-handoffs": "#00ffff",
    "gv-selected-bg": "#ffffff",
    "gv-selected-fg": "#000000",
    "gv-selected-row": "#303030",
    "gv-t0": "#00aaff",
    "gv-t1": "#ffaa00",
    "gv-t2": "#00ff88",
    "gv-t3": "#ff55ff",
    "gv-t4": "#aa88ff",
    "gv-t5": "#00ffff",
    "gv-t6": "#ff5555",
    "gv-t7": "#ccff00",
    "gv-t8": "#ff00aa",
    "gv-t9": "#ffff55",
    "gv-t10": "#00ddaa",
    "gv-t11": "#ff7700",
}

THEMES = [
    Theme(
        name="gilviz-dark",
        primary="#38bdf8",
        secondary="#a78bfa",
        accent="#f59e0b",
        warning="#facc15",
        error="#f87171",
        success="#4ade80",
        foreground="#e2e8f0",
        background="#0b1020",
        surface="#111827",
        panel="#1e293b",
        dark=True,
        variables={**DARK_VARS, "footer-key-foreground": "#38bdf8"},
    ),
    Theme(
        name="gilviz-light",
        primary="#0369a1",
        secondary="#6d28d9",
        accent="#b45309",
        warning="#a16207",
        error="#dc2626",
        success="#15803d",
        foreground="#0f172a",
        background="#fafafa",
        surface="#f1f5f9",
        panel="#e2e8f0",
        dark=False,
        variables={**LIGHT_VARS, "footer-key-foreground": "#0369a1"},
    ),
    Theme(
        name="gilviz-contrast",
        primary="#ffff00",
        secondary="#00ffff",
        accent="#ffff00",
        warning="#ffff00",
        error="#ff3030",
        success="#00ff00",
        foreground="#ffffff",
        background="#000000",
        surface="#000000",
        panel="#202020",
        dark=True,
        luminosity_spread=0.25,
        text_alpha=1.0,
        variables={**CONTRAST_VARS, "footer-key-foreground": "#ffff00"},
    ),
]
THEME_NAMES = [t.name for t in THEMES]
DEFAULT_THEME = "gilviz-dark"
