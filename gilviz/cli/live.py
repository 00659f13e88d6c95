"""The commands that open the live view: run, attach, replay (called by gilviz.cli.main).

Each checks its input before the screen opens (a bad target or file is one line on
stderr and exit status 2, via UserError), then builds the app with the one factory the
tests and the benchmark use too. Textual is imported only once the input is known good.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import sys
from typing import Callable

from ..errors import UserError
from .options import Parser, add_sampling_options, resolve_target, settings_from, split_target

SERVE_PID = "GILVIZ_SERVE_PID"  # in a page's environment (gilviz serve): the serve whose end ends the page
PR_SET_PDEATHSIG = 1


THEMES = {"dark": "gilviz-dark", "light": "gilviz-light", "contrast": "gilviz-contrast"}


def _add_view_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--theme", choices=sorted(THEMES), help="colours: dark (default), light, or contrast for projectors")
    p.add_argument("--screenshots", metavar="DIR",
                   help="where ctrl+s saves its SVGs (default: $GILVIZ_SCREENSHOTS, else this folder)")


def screenshot_dir(args: argparse.Namespace) -> str:
    """The folder screenshots go to, checked now: a wrong one is said before the screen opens."""
    folder = os.path.abspath(os.path.expanduser(args.screenshots or os.environ.get("GILVIZ_SCREENSHOTS") or "."))
    if not os.path.isdir(folder):
        raise UserError(f"--screenshots {folder} is not a folder; create it, or give another")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--screenshots {folder} is not writable; give another folder")
    return folder


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = Parser(prog=prog, description=description)
    add_sampling_options(p)
    _add_view_options(p)
    return p


def _default_target() -> list[str]:
    from ..tui import catalog

    name = catalog.default_name()
    if name is None:
        raise UserError("this install has no built-in scenarios; give a target, e.g. `gilviz run script.py`")
    return [name]


def _live(opts: list[str], target: list[str], prog: str) -> int:
    p = _parser(prog, "The live view of a target: a scenario, script.py ARGS, -m MODULE, -c CODE or --pid PID.")
    args = p.parse_args(opts)
    settings_from(args)  # refuses bad numbers before the screen opens
    if not target:
        target = _default_target()
    resolved = resolve_target(target, args.python)
    if resolved.get("pid") is not None:
        from ..session import check_attachable

        check_attachable(resolved["pid"])  # gone, not Python, not ours: said here, not on the screen
    command = resolved.get("command")
    scenario = getattr(command, "scenario", None) if command is not None else None
    label = getattr(command, "display", None) or " ".join(target)

    def check(new_target: list[str]) -> None:
        resolve_target(new_target, args.python)

    from ..sources import LiveSource

    source = LiveSource(target, _sampling_options(opts), label=label, scenario=scenario)
    return _open(source, args.theme, live_options=_sampling_options(opts), check_target=check,
                 screenshot_dir=screenshot_dir(args))


def _sampling_options(opts: list[str]) -> list[str]:
    """The options to hand on to the sampler: all but the view's own."""
    out, skip = [], False
    for opt in opts:
        if skip:
            skip = False
        elif opt in ("--theme", "--screenshots"):
            skip = True
        elif not opt.startswith(("--theme=", "--screenshots=")):
            out.append(opt)
    return out


def _has_terminal() -> bool:
    """A terminal, or a browser page (gilviz serve runs the app under Textual's web driver)."""
    if "web_driver" in os.environ.get("TEXTUAL_DRIVER", ""):
        return True
    return sys.stdin.isatty() and (sys.stdout.isatty() or sys.stderr.isatty())


def end_with_serve() -> None:
    """In a page's app: SIGTERM when serve dies, even by kill -9, which closes no page; the app
    ends as it does when its page closes, and takes its sampler and workload with it."""
    serve = os.environ.pop(SERVE_PID, None)  # the sampler and the workload are not pages
    if serve is None:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != int(serve):  # it died before we asked
        raise UserError("gilviz serve, which opened this page, is gone")


def _open(source, theme: str | None, **options) -> int:
    if not _has_terminal():
        # without a terminal Textual cannot read keys (and spins on the closed input)
        if source.capabilities.live:
            raise UserError("the live view needs a terminal; to sample without one, use `gilviz record -o FILE TARGET`")
        path = shlex.quote(source.path)
        raise UserError(f"the replay needs a terminal; without one, `gilviz report {path}` gives its "
                        f"totals and `gilviz export {path} --format svg` its screen")
    from ..tui import make_app

    end_with_serve()
    app = make_app(source, theme_name=THEMES.get(theme or ""), **options)
    try:
        app.run()
    finally:
        for timeline in app.timelines:
            timeline.source.stop()
            wait: Callable[..., None] | None = getattr(timeline.source, "wait_stopped", None)
            if wait is not None:
                wait(5.0)  # the sampler ends its workload before we return
    # the point of the run, still there after the screen is gone
    for name, timeline in zip(app.names, app.timelines):
        said = timeline.outcome.sentence
        if said:
            print(f"{name}: {said}")
    if len(app.timelines) > 1:
        from ..timeline import present

        c = present.comparison([t.model for t in app.timelines], app.names, app.together)
        if c.caption:
            print(c.caption)
    return app.return_code or 0


def cmd_run(argv: list[str]) -> int:
    opts, target = split_target(argv)
    return _live(opts, target, "gilviz run")


def cmd_attach(argv: list[str]) -> int:
    opts, rest = split_target(argv)
    if len(rest) != 1 or not rest[0].isdigit():
        raise UserError("attach needs a process id, e.g. `gilviz attach 1234`")
    return _live(opts, ["--pid", rest[0]], "gilviz attach")


COMPARE_DURATION_S = 5.0  # each side of a comparison, unless it says otherwise


def _side_name(display: str, python: str | None) -> str:
    """A side of a comparison named by its interpreter too, when it was given: comparing
    versions, "cpu-threads: 1.6x cpu-threads" would say nothing."""
    if not python:
        return display
    spec = python if re.fullmatch(r"\d+\.\d+t?", python) is None else f"Python {python}"
    return f"{display} on {os.path.basename(spec)}"


def cmd_compare(argv: list[str]) -> int:
    """gilviz compare [--together] [--record FILE [--force]] [--theme T] [--screenshots DIR] A -- B"""
    p = Parser(prog="gilviz compare", description="Two runs on one time axis: gilviz compare A -- B.")
    p.add_argument("--together", action="store_true", help="run both at once (they share the cores)")
    p.add_argument("--record", metavar="FILE", help="save both runs in one recording (gilviz replay shows it)")
    p.add_argument("--force", action="store_true", help="write over the --record file if it exists")
    _add_view_options(p)
    lead = []
    rest = list(argv)
    while rest and rest[0] in ("--together", "--force", "--record", "--theme", "--screenshots", "-h", "--help"):
        lead.append(rest.pop(0))
        if lead[-1] in ("--record", "--theme", "--screenshots") and rest:
            lead.append(rest.pop(0))
    args = p.parse_args(lead)
    shots = screenshot_dir(args)
    if "--" not in rest:
        raise UserError("compare needs two targets split by --, e.g. "
                        "`gilviz compare cpu-threads --threads 4 -- cpu-processes --processes 4`")
    cut = rest.index("--")
    sides = []
    sessions = []
    for side in (rest[:cut], rest[cut + 1 :]):
        opts, target = split_target(side)
        if not target:
            raise UserError("each side of compare needs a target, e.g. `gilviz compare cpu-threads -- cpu-processes`")
        side_args = _parser("gilviz compare", "").parse_args(opts)
        settings_from(side_args)
        resolved = resolve_target(target, side_args.python)
        if resolved.get("pid") is not None:
            raise UserError("compare starts both runs itself: give it two targets, not --pid")
        if side_args.duration is None:
            opts = [*opts, "--duration", str(COMPARE_DURATION_S)]
        command = resolved["command"]
        sides.append((target, _sampling_options(opts), _side_name(command.display, side_args.python), command.scenario))
        settings = settings_from(side_args)
        if settings.duration_s is None:
            settings.duration_s = COMPARE_DURATION_S
        sessions.append((settings, resolved))
    names = [sides[0][2], sides[1][2]]
    if names[0] == names[1]:  # the same target twice (other sampling options): told apart by letter
        names = [f"{names[0]} (A)", f"{names[1]} (B)"]
    if args.record and not _has_terminal():
        # no screen: record both, then say where they are
        from ..session import record_comparison

        ends = record_comparison(args.record, sessions, names, together=args.together, force=args.force)
        print(f"gilviz: recorded {len(ends)} run{'s' if len(ends) != 1 else ''} to {args.record}; "
              f"see them with `gilviz report {args.record}` or `gilviz replay {args.record}`", file=sys.stderr)
        return 0
    from ..sources import LiveSource

    a, b = (LiveSource(target, opts, label=label, scenario=scenario) for target, opts, label, scenario in sides)
    writer = None
    if args.record:
        from ..recording import RecordingWriter
        from ..stream import Compare

        writer = RecordingWriter(args.record, force=args.force)
        writer.write(Compare(runs=names, together=args.together))
    try:
        return _open(a, args.theme, compare=b, together=args.together, names=names, record_to=writer,
                     screenshot_dir=shots)
    finally:
        if writer is not None:
            writer.close()
            print(f"gilviz: both runs recorded to {args.record}; see them with `gilviz replay {args.record}`",
                  file=sys.stderr)


def cmd_replay(argv: list[str]) -> int:
    p = Parser(prog="gilviz replay", description="The live view of a recording.")
    p.add_argument("file")
    p.add_argument("--speed", type=float, default=1.0,
                   help="times real time (default 1); 0 loads the whole recording at once")
    _add_view_options(p)
    args = p.parse_args(argv)
    if args.speed < 0:
        raise UserError("--speed must be 0 or more")
    from ..recording import comparison, read

    records = read(args.file)
    next(records)  # the header: a missing or corrupt file is refused here
    records.close()
    from ..sources import ReplaySource

    source = ReplaySource(args.file, speed=args.speed)
    compare = comparison(args.file)
    if compare is not None:  # two runs recorded by gilviz compare
        names = (compare.runs + ["A", "B"])[:2]
        return _open(source, args.theme, fit_when_loaded=args.speed == 0, names=names, together=compare.together,
                     screenshot_dir=screenshot_dir(args),
                     compare=ReplaySource(args.file, speed=args.speed, run=1))
    return _open(source, args.theme, fit_when_loaded=args.speed == 0, screenshot_dir=screenshot_dir(args))


TUI_COMMANDS: dict[str, Callable[[list[str]], int]] = {"run": cmd_run, "attach": cmd_attach, "replay": cmd_replay,
                                                       "compare": cmd_compare}
