"""The commands without a screen: record, report, scenarios, pythons, and the live view's sampler
process (_sample)."""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any

from ..errors import UserError
from ..report import describe_exit
from .options import Parser, add_sampling_options, resolve_target, settings_from, split_target

def _default_output(target: list[str]) -> str:
    """gilviz-NAME-DATE.gilviz, with -2, -3... if that file exists (nothing is written over)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = os.path.splitext(os.path.basename(target[0]))[0] if target and not target[0].startswith("-") else "run"
    path, n = f"gilviz-{name}-{stamp}.gilviz", 1
    while os.path.lexists(path):
        n += 1
        path = f"gilviz-{name}-{stamp}-{n}.gilviz"
    return path


def _check_output(out: str, kwargs: dict[str, Any]) -> None:
    """Refuses to record over the program being run, even with --force."""
    command = kwargs.get("command")
    if command is None or not os.path.exists(out):
        return
    args = list(command.argv[1:])
    if "-m" in args[:-1]:  # a module of this folder, as `python -m` finds it first
        module = os.path.join(*args[args.index("-m") + 1].split("."))
        args += [module + ".py", os.path.join(module, "__main__.py"), os.path.join(module, "__init__.py")]
    for arg in args:
        try:
            if os.path.exists(arg) and os.path.samefile(arg, out):
                raise UserError(f"{out} is the program being run; give -o another file")
        except OSError:
            continue


def cmd_record(argv: list[str]) -> int:
    opts, target = split_target(argv)
    p = Parser(prog="gilviz record", description="Sample a target into a recording file.")
    p.add_argument("-o", "--output", help="recording file (default: gilviz-NAME-DATE.gilviz, never an existing one)")
    p.add_argument("--force", action="store_true", help="write over the -o file if it exists")
    p.add_argument("--exit-code", action="store_true",
                   help="exit with the target's status when it ends by itself (128+N if killed by signal N)")
    add_sampling_options(p)
    args = p.parse_args(opts)
    settings = settings_from(args)
    kwargs = resolve_target(target, args.python)
    out = args.output or _default_output(target)
    _check_output(out, kwargs)
    from ..session import record_to_file

    said: list[str] = []
    end = record_to_file(out, settings, force=args.force, said=said, **kwargs)
    code = end.exit_code
    ended_by_gilviz = "gilviz ended the target" if kwargs.get("command") is not None else "the process runs on"
    how = {"exited": "the target exited", "duration": f"the duration passed, {ended_by_gilviz}",
           "interrupted": f"interrupted, {ended_by_gilviz}", "stopped": "stopped"}.get(end.reason, end.reason)
    ended_itself = end.reason == "exited"
    if ended_itself and code is not None and kwargs.get("command") is not None:
        how += f", {describe_exit(code)}"
        if code != 0 and said:  # what it failed with, not left inside the file alone
            how += f": {said[0][:200]}"
    print(f"gilviz: recorded {end.sampler_wall_s or 0:.1f} s ({how}) to {out}; "
          f"see it with `gilviz report {out}` or `gilviz replay {out}`", file=sys.stderr)
    if args.exit_code and ended_itself and code is not None:
        return code if code >= 0 else 128 - code
    return 0


def cmd_sample(argv: list[str]) -> int:
    """The live view's sampler, in a process of its own: records on stdout, uncompressed."""
    opts, target = split_target(argv)
    p = Parser(prog="gilviz _sample")
    add_sampling_options(p)
    args = p.parse_args(opts)
    settings = settings_from(args)
    kwargs = resolve_target(target, args.python)
    from ..session import stream_to_stdout

    stream_to_stdout(settings, **kwargs)
    return 0


def cmd_report(argv: list[str]) -> int:
    p = Parser(prog="gilviz report", description="Totals of a recording (of both runs, for a comparison).")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = p.parse_args(argv)
    from ..recording import comparison
    from ..report import compare_text, format_text, summarize_file, summarize_runs, to_json

    compare = comparison(args.file)
    if compare is None:
        summary = summarize_file(args.file)
        print(to_json(summary) if args.json else format_text(summary))
        return 0
    runs = summarize_runs(args.file)  # (a run the recording was cut short before is None)
    names = (compare.runs + ["A", "B"])[:2]
    if args.json:
        print(to_json({"compare": {"runs": names, "together": compare.together,
                                   "began": [run is not None for run in runs], **compare_figures(runs, names)},
                       "runs": runs}))
    else:
        print(compare_text(runs, names, compare.together))
    return 0


def compare_figures(runs: list[dict[str, Any] | None], names: list[str]) -> dict[str, Any]:
    from ..report import throughput_ratio

    return throughput_ratio(runs, names)


def cmd_scenarios(argv: list[str]) -> int:
    from .. import scenarios

    for s in scenarios.SCENARIOS.values():
        opts = " ".join(f"{flag} {default}" if default not in (None, True, False) else flag for flag, default, _ in s.options)
        print(f"{s.name:<16} {s.summary}")
        if opts:
            print(f"{'':<16}   options: {opts}")
    return 0


def cmd_pythons(argv: list[str]) -> int:
    from ..target import interpreter_candidates, query_interpreter

    seen = set()
    for path in interpreter_candidates():
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            interp = query_interpreter(path)
        except UserError:
            continue
        gil = "GIL" if interp.gil_enabled else "no GIL (free-threaded)"
        print(f"{interp.version + ('t' if interp.free_threaded else ''):<10} {gil:<24} {path}")
    return 0
