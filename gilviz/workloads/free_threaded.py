"""cpu-threads on a free-threaded CPython (PEP 703: 3.13t, 3.14t), which has no GIL.

The same pure-Python spinning threads as cpu-threads, but nothing makes them take turns:
each thread runs on its own core and the loops add up. On the timeline: every thread
running at once, on all cores. On an interpreter with the GIL it warns on stderr and
still runs, so the two pictures can be compared.
"""

import sys
import sysconfig

import cpu_threads


def gil_warning():
    """Why this run still has a GIL, and how to get one without; None when it has none."""
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return (
            f"free-threaded: CPython {sys.version.split()[0]} is not a free-threaded build, so this run "
            "has the GIL and looks like cpu-threads; install one (pyenv install 3.13t, or "
            "uv python install 3.13t) and run with --python 3.13t"
        )
    if getattr(sys, "_is_gil_enabled", lambda: True)():
        return (
            "free-threaded: this free-threaded build has the GIL switched back on (PYTHON_GIL=1, or an "
            "extension module that needs it); unset PYTHON_GIL to run without it"
        )
    return None


def build_parser():
    return cpu_threads.build_parser(__doc__)


if __name__ == "__main__":
    arguments = build_parser().parse_args()
    warning = gil_warning()
    if warning:
        print(warning, file=sys.stderr, flush=True)
    cpu_threads.run(arguments, "free-threaded")
