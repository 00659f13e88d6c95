"""gilviz export: a recording as a Perfetto trace, the screen at a moment as SVG, or the replay as
an asciicast. Every mistake is refused before anything is written."""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Any

from ..errors import UserError
from ..recording import check_new_file
from .live import THEMES
from .options import Parser, _number

FORMATS = ("perfetto", "svg", "asciicast")
SUFFIXES = {"perfetto": ".trace.json", "svg": ".svg", "asciicast": ".cast"}
MIN_SIZE, MAX_SIZE = (60, 16), (400, 150)


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m:
        raise UserError(f"--size takes columns x lines, e.g. 160x48, not {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (MIN_SIZE[0] <= w <= MAX_SIZE[0] and MIN_SIZE[1] <= h <= MAX_SIZE[1]):
        raise UserError(f"--size must be from {MIN_SIZE[0]}x{MIN_SIZE[1]} to {MAX_SIZE[0]}x{MAX_SIZE[1]}, not {w}x{h}")
    return w, h


def default_output(path: str, fmt: str, at: float | None = None) -> str:
    base = os.path.basename(path)
    for ext in (".gilviz", ".gz", ".jsonl"):
        if base.endswith(ext):
            base = base[: -len(ext)]
    if fmt == "svg" and at is not None:
        base += f"-{at:g}s"
    return base + SUFFIXES[fmt]


def cmd_export(argv: list[str]) -> int:
    p = Parser(prog="gilviz export",
               description="A recording as a Perfetto trace, the screen at a moment as SVG, or an asciicast of its replay.")
    p.add_argument("file")
    p.add_argument("--format", required=True, help="perfetto, svg or asciicast")
    p.add_argument("-o", "--output", help="where to write (default: beside the recording's name, in this folder)")
    p.add_argument("--force", action="store_true", help="write over the output if it exists")
    p.add_argument("--at", type=float, help="svg: the moment, in seconds since the start (default: the end)")
    p.add_argument("--size", default=None, help="svg, asciicast: the screen, columns x lines (default 160x48; cast 120x36)")
    p.add_argument("--theme", choices=sorted(THEMES), help="svg, asciicast: dark (default), light, or contrast")
    p.add_argument("--speed", type=float, default=1.0, help="asciicast: times real time (default 1)")
    p.add_argument("--fps", type=float, default=10.0, help="asciicast: frames per second of the cast (default 10)")
    args = p.parse_args(argv)
    fmt = (args.format or "").lower()
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {args.format!r}")
    if not os.path.isfile(args.file):
        raise UserError(f"no recording at {args.file}")
    from ..recording import RunNotBegun, comparison, read

    compare = comparison(args.file)
    runs, not_begun = [], None  # the runs the file holds; why one is missing
    for run in range(2 if compare is not None else 1):
        try:
            next(read(args.file, run=run))  # not a recording: one line, before anything is written
            runs.append(run)
        except RunNotBegun as e:  # (gilviz compare --record killed before this run)
            not_begun = not_begun or e
    if not runs:
        raise not_begun
    if fmt == "perfetto":
        for name in ("at", "theme"):
            if getattr(args, name) is not None:
                raise UserError(f"--{name} is for svg and asciicast, not perfetto")
        out = args.output or default_output(args.file, fmt)
        _check_new(out, args.force, args.file)
        return _perfetto(args.file, out, args.force, compare, runs)
    if not_begun is not None:  # the screen of a comparison draws both runs
        held, missing = "AB"[runs[0]], "AB"[1 - runs[0]]
        raise UserError(f"{args.file} holds run {held} only (run {missing} was cut short before it began), and the "
                        f"screen of a comparison needs both: export it with --format perfetto, or read it with "
                        f"`gilviz report {args.file}`")
    size = parse_size(args.size) if args.size else ((160, 48) if fmt == "svg" else (120, 36))
    theme = THEMES[args.theme] if args.theme else None
    from ..recording import last_time

    duration = max(last_time(args.file, run) for run in runs) / 1e6
    if fmt == "svg":
        at = duration if args.at is None else args.at
        if not math.isfinite(at) or not 0 <= at <= duration + 1e-6:
            raise UserError(f"--at {args.at:g} is outside the run, which lasts {duration:.3f} s; "
                            f"give a time from 0 to {duration:.3f}")
        out = args.output or default_output(args.file, fmt, round(at, 3))
        from ..tui.export import export_svg

        _check_new(out, args.force, args.file)
        export_svg(args.file, out, at, size, theme, args.force)
        print(f"gilviz: the screen at {at:.3f} s ({size[0]}x{size[1]}) written to {out}", file=sys.stderr)
        return 0
    speed = _number(args.speed, "--speed", 0, 100.0)
    fps = _number(args.fps, "--fps", 0, 60.0)
    out = args.output or default_output(args.file, fmt)
    _check_new(out, args.force, args.file)
    from ..tui.export import export_asciicast

    frames = export_asciicast(args.file, out, size, theme, speed, fps, args.force)
    print(f"gilviz: {frames} frames ({duration / speed:.1f} s at {speed:g}x, {size[0]}x{size[1]}) written to {out}; "
          f"play it with `asciinema play {out}`", file=sys.stderr)
    return 0


def _check_new(out: str, force: bool, source: str) -> None:
    """Said before anything is drawn: the file is the recording itself, or cannot be made."""
    if os.path.exists(out) and os.path.samefile(out, source):
        raise UserError(f"{out} is the recording being exported; give -o another file")
    check_new_file(out, force)


def _perfetto(path: str, out: str, force: bool, compare: Any, held: list[int]) -> int:
    """held: the runs of a comparison the file holds (one, when it was cut short before the other)."""
    from ..export import new_file
    from ..export.perfetto import write_trace
    from ..recording import read

    only = ""
    if compare is None:
        runs = [(read(path), "")]
    else:
        names = (compare.runs + ["A", "B"])[:2]
        runs = [(read(path, run=i), f"{'AB'[i]} {names[i]}") for i in held]
        if len(held) == 1:
            only = f" of run {'AB'[held[0]]} only (run {'AB'[1 - held[0]]} was cut short before it began)"
    with new_file(out, force) as f:
        wrote = write_trace(f, runs)
    size = os.path.getsize(out)
    print(f"gilviz: {wrote['events']:,} events from {sum(wrote['ticks']):,} ticks{only} written to {out} "
          f"({size / 1e6:.1f} MB); open it at https://ui.perfetto.dev", file=sys.stderr)
    return 0
