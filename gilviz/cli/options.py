"""Parsing the command line: gilviz's options, the TARGET after them, and turning a TARGET into
what to launch (or attach to). Shared by every command that starts a target."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any, NoReturn

from ..errors import UserError

# gilviz options that take a value, shared by the commands that start a target
_VALUE_OPTIONS = {"-o", "--output", "--duration", "--rate", "--gil-rate", "--budget", "--python", "--stacks-rate", "--speed", "--theme",
                 "--screenshots"}
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


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--python", help="interpreter: a path, a name on PATH, or a version such as 3.12 or 3.13t")
    p.add_argument("--rate", type=float, default=200.0, help="ticks per second (default 200)")
    p.add_argument("--gil-rate", type=float,
                   help="GIL samples per second at most; fewer when over --budget (default: 2000, and up to "
                        "10000 while the core gilviz samples from is otherwise idle: there the samples take "
                        "nothing from the workload)")
    p.add_argument("--budget", type=float, default=15.0,
                   help="CPU the whole sampler may spend (its reads, GIL samples and py-spy), in percent of "
                        "one core (default 15). Over it, GIL sampling slows first (to no less than 1000/s), "
                        "then py-spy's dumps, then idle threads are read less often, then the ticks lengthen")
    p.add_argument("--stacks-rate", type=float, default=5.0,
                   help="py-spy stack dumps per second, for the lines each thread is on, where py-spy reads them "
                        "(default 5; 0: no lines). 3.9 to 3.15 targets with a GIL are read at the tick rate (by gilviz, "
                        "or on 3.14+ by CPython's own reader) and py-spy only names threads")
    p.add_argument("--duration", type=float, help="stop after this many seconds")


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line that says what to do, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message}; see `{self.prog} --help`")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        for action in self._actions:  # an empty value (-o "") is a mistake, not "the default"
            if action.option_strings and getattr(parsed, action.dest, None) == "":
                self.error(f"{'/'.join(action.option_strings)} needs a value, not an empty one")
        return parsed


def _number(value: float, name: str, low: float, high: float, zero: bool = False) -> float:
    """A finite number in (low, high], or 0 where zero is allowed (nan and inf are refused)."""
    if zero and value == 0:
        return value
    if not math.isfinite(value) or not low < value <= high:
        raise UserError(f"{name} must be a number above {low:g}{'' if high == math.inf else f' and at most {high:g}'}"
                        f"{' (or 0)' if zero else ''}, not {value:g}")
    return value


def settings_from(args: argparse.Namespace):
    from ..session import Settings

    return Settings(
        tick_hz=_number(args.rate, "--rate", 0, MAX_TICK_HZ),
        gil_hz=_number(args.gil_rate, "--gil-rate", 0, MAX_GIL_HZ) if args.gil_rate is not None else None,
        cpu_budget=_number(args.budget, "--budget", 0, 100.0 * (os.cpu_count() or 1)) / 100.0,
        stacks_hz=_number(args.stacks_rate, "--stacks-rate", 0, MAX_STACKS_HZ, zero=True),
        duration_s=_number(args.duration, "--duration", 0, math.inf) if args.duration is not None else None,
    )


def resolve_target(target: list[str], python: str | None) -> dict[str, Any]:
    """Turns TARGET tokens into run_session's keyword arguments (command + interp, or pid)."""
    from ..target import resolve_python

    if target[:1] == ["--pid"] or (target and target[0].startswith("--pid=")):
        raw = target[0].split("=", 1)[1] if "=" in target[0] else (target[1] if len(target) > 1 else "")
        if not raw.isdigit():
            raise UserError("--pid needs a process id, e.g. --pid 1234")
        return {"pid": int(raw)}
    interp = resolve_python(python)
    return {"command": build_command(target, interp), "interp": interp}


def build_command(target: list[str], interp):
    from ..target import Command

    py = interp.path
    if not target:
        from ..scenarios import DEFAULT_SCENARIO

        target = [DEFAULT_SCENARIO]
    head, rest = target[0], target[1:]
    if head == "-m":
        if not rest:
            raise UserError("-m needs a module name, e.g. -m http.server")
        return Command([py, "-m", *rest], "python -m " + " ".join(rest))
    if head == "-c":
        if not rest:
            raise UserError("-c needs code to run, e.g. -c 'print(1)'")
        return Command([py, "-c", *rest], "python -c " + " ".join(" ".join(rest).split()))  # one line
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
    from .. import scenarios
    from ..target import Command

    scenario = scenarios.SCENARIOS.get(head)
    if scenario is not None and ("-h" in rest or "--help" in rest):
        raise ShowText(scenario_help(scenario))
    if scenario is not None:
        problem = (scenarios.check(scenario, interp.version_info, interp.free_threaded)
                   or scenarios.option_error(scenario, rest))
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
