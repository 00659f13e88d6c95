"""The gilviz command line.

    gilviz                          the live view on the default scenario
    gilviz run TARGET               the live view on any target
    gilviz attach PID               the live view on a running process
    gilviz replay FILE              the live view on a recording
    gilviz record [-o FILE] TARGET  sample to a file, no screen
    gilviz report FILE [--json]     totals of a recording
    gilviz scenarios | pythons      what can be run, and on which interpreters

TARGET is a scenario name with its options, a script with its arguments, -m MODULE,
-c CODE, or --pid PID. gilviz's own options come before the TARGET.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import math
from typing import Any, NoReturn

from . import __version__
from .errors import UserError

# gilviz options that take a value, shared by the commands that start a target
_VALUE_OPTIONS = {"-o", "--output", "--duration", "--rate", "--gil-rate", "--budget", "--python", "--stacks-rate", "--speed", "--theme"}
MAX_TICK_HZ = 2000.0
MAX_GIL_HZ = 100_000.0
MAX_STACKS_HZ = 100.0
_FLAG_OPTIONS = {"-h", "--help", "--json", "--force", "--exit-code"}


def split_target(tokens: list[str]) -> tuple[list[str], list[str]]:
    """Splits argv into gilviz's options and the TARGET, which begins at the first other token."""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        name = tok.split("=", 1)[0]
        if tok == "--":
            return tokens[:i], tokens[i + 1 :]
        if name in _VALUE_OPTIONS:
            i += 1 if "=" in tok else 2
        elif tok in _FLAG_OPTIONS:
            i += 1
        else:
            break
    return tokens[:i], tokens[i:]


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--python", help="interpreter: a path, a name on PATH, or a version such as 3.12 or 3.13t")
    p.add_argument("--rate", type=float, default=200.0, help="ticks per second (default 200)")
    p.add_argument("--gil-rate", type=float, default=10_000.0,
                   help="GIL samples per second at most (default 10000); fewer when over --budget")
    p.add_argument("--budget", type=float, default=15.0,
                   help="CPU the sampler may spend, in percent of one core (default 15); "
                        "GIL sampling slows down to stay within it, to no less than 1000/s")
    p.add_argument("--stacks-rate", type=float, default=1.0, help="py-spy stack dumps per second (default 1; 0: none)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line that says what to do, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message}; see `{self.prog} --help`")


def _number(value: float, name: str, low: float, high: float, zero: bool = False) -> float:
    """A finite number in (low, high], or 0 where zero is allowed (nan and inf are refused)."""
    if zero and value == 0:
        return value
    if not math.isfinite(value) or not low < value <= high:
        raise UserError(f"{name} must be a number above {low:g}{'' if high == math.inf else f' and at most {high:g}'}"
                        f"{' (or 0)' if zero else ''}, not {value:g}")
    return value


def settings_from(args: argparse.Namespace):
    from .session import Settings

    return Settings(
        tick_hz=_number(args.rate, "--rate", 0, MAX_TICK_HZ),
        gil_hz=_number(args.gil_rate, "--gil-rate", 0, MAX_GIL_HZ),
        cpu_budget=_number(args.budget, "--budget", 0, 100.0 * (os.cpu_count() or 1)) / 100.0,
        stacks_hz=_number(args.stacks_rate, "--stacks-rate", 0, MAX_STACKS_HZ, zero=True),
        duration_s=_number(args.duration, "--duration", 0, math.inf) if args.duration is not None else None,
    )


def resolve_target(target: list[str], python: str | None) -> dict[str, Any]:
    """Turns TARGET tokens into run_session's keyword arguments (command + interp, or pid)."""
    from .target import resolve_python

    if target[:1] == ["--pid"] or (target and target[0].startswith("--pid=")):
        raw = target[0].split("=", 1)[1] if "=" in target[0] else (target[1] if len(target) > 1 else "")
        if not raw.isdigit():
            raise UserError("--pid needs a process id, e.g. --pid 1234")
        return {"pid": int(raw)}
    interp = resolve_python(python)
    return {"command": build_command(target, interp), "interp": interp}


def build_command(target: list[str], interp):
    from .target import Command

    py = interp.path
    if not target:
        from .scenarios import DEFAULT_SCENARIO

        target = [DEFAULT_SCENARIO]
    head, rest = target[0], target[1:]
    if head == "-m":
        if not rest:
            raise UserError("-m needs a module name, e.g. -m http.server")
        return Command([py, "-m", *rest], "python -m " + " ".join(rest))
    if head == "-c":
        if not rest:
            raise UserError("-c needs code to run, e.g. -c 'print(1)'")
        return Command([py, "-c", *rest], "python -c " + " ".join(rest))
    if head.startswith("-"):
        raise UserError(f"unknown option {head}; see `gilviz --help`")
    if not os.path.exists(head):
        if head.endswith(".py") or os.sep in head:
            raise UserError(f"no script at {head}; check the path")
        return _scenario_command(head, rest, interp)
    if os.path.isdir(head):
        raise UserError(f"{head} is a folder; give a Python script, -m MODULE, or a scenario name")
    with open(head, "rb") as f:
        start = f.read(4)
    if start == b"\x7fELF":
        raise UserError(f"{head} is a compiled program, not a Python script; gilviz runs Python code "
                        "(to watch a running Python process, use --pid)")
    return Command([py, os.path.abspath(head), *rest], " ".join([head, *rest]))


def _scenario_command(head: str, rest: list[str], interp):
    from . import scenarios
    from .target import Command

    scenario = scenarios.SCENARIOS.get(head)
    if scenario is not None and ("-h" in rest or "--help" in rest):
        raise ShowText(scenario_help(scenario))
    if scenario is not None:
        problem = scenarios.check(scenario, interp.version_info, interp.free_threaded)
        if problem:
            raise UserError(problem)
        return Command([interp.path, scenarios.script_path(scenario), *rest], " ".join([head, *rest]), scenario=head)
    raise UserError(f"no scenario or script named '{head}'; `gilviz scenarios` lists the scenarios")


class ShowText(Exception):
    """Not an error: text the user asked for (a scenario's help), printed with exit 0."""


def scenario_help(scenario) -> str:
    import textwrap

    wrap = lambda text: textwrap.fill(text, 88, initial_indent="  ", subsequent_indent="  ")  # noqa: E731
    lines = [f"{scenario.name}: {scenario.summary}", "", wrap(scenario.explanation), "", "What to look for:",
             wrap(scenario.look_for), "", "Options:"]
    for flag, default, text in scenario.options:
        lines.append(f"  {flag:<16} {text} (default {default})")
    if scenario.min_python > (3, 9):
        lines += ["", f"Needs CPython {'.'.join(map(str, scenario.min_python))} or later."]
    if scenario.needs_free_threaded:
        lines += ["", "Needs a free-threaded CPython (3.13t or later): --python 3.13t."]
    lines += ["", f"Run it: gilviz run {scenario.name} [options]   (or gilviz record {scenario.name} [options])"]
    return "\n".join(lines)


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
    for arg in command.argv[1:]:
        try:
            if os.path.exists(arg) and os.path.samefile(arg, out):
                raise UserError(f"{out} is the program being run; give -o another file")
        except OSError:
            continue


def describe_exit(code: int | None) -> str:
    """How a process ended, from its Popen return code."""
    if code is None:
        return "its end is unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit status {code}"


def cmd_record(argv: list[str]) -> int:
    opts, target = split_target(argv)
    p = Parser(prog="gilviz record", description="Sample a target into a recording file.")
    p.add_argument("-o", "--output", help="recording file (default: gilviz-NAME-DATE.gilviz, never an existing one)")
    p.add_argument("--force", action="store_true", help="write over the -o file if it exists")
    p.add_argument("--exit-code", action="store_true",
                   help="exit with the target's status when it ends by itself (128+N if killed by signal N)")
    _add_sampling_options(p)
    args = p.parse_args(opts)
    settings = settings_from(args)
    kwargs = resolve_target(target, args.python)
    out = args.output or _default_output(target)
    _check_output(out, kwargs)
    from .session import record_to_file

    end = record_to_file(out, settings, force=args.force, **kwargs)
    code = end.exit_code
    how = {"exited": "the target exited", "duration": "the duration passed, gilviz ended the target",
           "interrupted": "interrupted, gilviz ended the target", "stopped": "stopped"}.get(end.reason, end.reason)
    ended_itself = end.reason == "exited"
    if ended_itself and code is not None and kwargs.get("command") is not None:
        how += f", {describe_exit(code)}"
    print(f"gilviz: recorded {end.sampler_wall_s or 0:.1f} s ({how}) to {out}; "
          f"see it with `gilviz report {out}` or `gilviz replay {out}`", file=sys.stderr)
    if args.exit_code and ended_itself and code is not None:
        return code if code >= 0 else 128 - code
    return 0


def cmd_sample(argv: list[str]) -> int:
    """The live view's sampler, in a process of its own: records on stdout, uncompressed."""
    opts, target = split_target(argv)
    p = Parser(prog="gilviz _sample")
    _add_sampling_options(p)
    args = p.parse_args(opts)
    settings = settings_from(args)
    kwargs = resolve_target(target, args.python)
    from .session import stream_to_stdout

    stream_to_stdout(settings, **kwargs)
    return 0


def cmd_report(argv: list[str]) -> int:
    p = Parser(prog="gilviz report", description="Totals of a recording.")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = p.parse_args(argv)
    from .collect import replay_file
    from .recording import Damage
    from .report import Report, format_text, to_json

    damage = Damage()
    report = replay_file(args.file, Report(), damage)
    report.damaged_records, report.damaged_tail = damage.records, damage.tail
    summary = report.summary()
    print(to_json(summary) if args.json else format_text(summary))
    return 0


def cmd_scenarios(argv: list[str]) -> int:
    from . import scenarios

    for s in scenarios.SCENARIOS.values():
        opts = " ".join(f"{flag} {default}" if default not in (None, True, False) else flag for flag, default, _ in s.options)
        print(f"{s.name:<16} {s.summary}")
        if opts:
            print(f"{'':<16}   options: {opts}")
    return 0


def cmd_pythons(argv: list[str]) -> int:
    from .target import interpreter_candidates, query_interpreter

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


COMMANDS = {"record": cmd_record, "_sample": cmd_sample, "report": cmd_report, "scenarios": cmd_scenarios, "pythons": cmd_pythons}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if argv[:1] == ["--version"]:
        print(f"gilviz {__version__}")
        return 0
    try:
        command = argv[0] if argv else "run"
        if command in COMMANDS:
            return COMMANDS[command](argv[1:])
        from .tui_entry import TUI_COMMANDS

        if command in TUI_COMMANDS:
            return TUI_COMMANDS[command](argv[1:])
        return TUI_COMMANDS["run"](argv)  # `gilviz cpu-threads` is `gilviz run cpu-threads`
    except UserError as e:
        print(f"gilviz: {e}", file=sys.stderr)
        return e.exit_status
    except ShowText as e:
        print(e)
        return 0
    except KeyboardInterrupt:
        print("gilviz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `gilviz report x | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
