"""The gilviz command line.

    gilviz                          the live view on the default scenario
    gilviz run TARGET               the live view on any target
    gilviz attach PID               the live view on a running process
    gilviz replay FILE              the live view on a recording
    gilviz record [-o FILE] TARGET  sample to a file, no screen
    gilviz report FILE [--json]     totals of a recording
    gilviz export FILE --format F   a Perfetto trace, an SVG of the screen, an asciicast
    gilviz serve [TARGET | FILE]    the app in a browser (pip install 'gilviz[serve]')
    gilviz scenarios | pythons      what can be run, and on which interpreters

TARGET is a scenario name with its options, a script with its arguments, -m MODULE,
-c CODE, or --pid PID. gilviz's own options come before the TARGET.
"""

from __future__ import annotations

import os
import signal
import sys

from .. import __version__
from ..errors import UserError
from .commands import cmd_pythons, cmd_record, cmd_report, cmd_sample, cmd_scenarios
from .export import cmd_export
from .serve import cmd_serve
from .options import ShowText

# ended by SIGTERM and SIGHUP as by Ctrl-C, where the default would end them mid-write
# (the sessions and the live view take these signals their own way)
ENDED_AS_BY_CTRL_C = ("report", "export", "scenarios", "pythons")

COMMANDS = {"record": cmd_record, "_sample": cmd_sample, "report": cmd_report, "scenarios": cmd_scenarios,
            "pythons": cmd_pythons, "export": cmd_export, "serve": cmd_serve}


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
        if command in ENDED_AS_BY_CTRL_C:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, _interrupt)
        if command in COMMANDS:
            return COMMANDS[command](argv[1:])
        from .live import TUI_COMMANDS

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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
