"""The built-in scenarios: small workloads that each make one point about the GIL.

Each scenario is a standalone script in gilviz/workloads, run by path in the chosen
interpreter (so it must not import gilviz). This registry describes them for the CLI and
the screen: what each teaches, what to look for, its options and what it needs.
Stdlib only: the core imports this without Textual.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

WORKLOADS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workloads")
PROGRESS_FD_ENV = "GILVIZ_PROGRESS_FD"  # the workloads' progress side channel (see workloads/_common.py)

Option = tuple  # (flag, default, help), as the workload's argparse declares it


@dataclass(frozen=True)
class Scenario:
    name: str
    script: str  # file name in gilviz/workloads
    summary: str  # one line: the point it makes
    explanation: str
    look_for: str  # what the timeline should show
    options: tuple[Option, ...] = ()
    min_python: tuple[int, int] = (3, 9)
    needs_free_threaded: bool = False


_DURATION: Option = ("--duration", 10.0, "seconds to run; 0 runs until killed")
_SPIN_SIZE: Option = ("--size", 50_000, "loop iterations per counted loop")

_ALL = (
    Scenario(
        name="cpu-threads",
        script="cpu_threads.py",
        summary="Threads are real OS threads, but only one runs Python at a time: CPU work in N threads is no faster.",
        explanation=(
            "Every thread spins in pure Python. The GIL lets one thread execute bytecode at a time, "
            "so four threads get through no more loops than one would, and the hand-offs between "
            "them cost a little on top."
        ),
        look_for=(
            "One thread running while the others wait for the GIL; the holder changing about every "
            "switch interval (5 ms); about one core busy in all."
        ),
        options=(("--threads", 4, "CPU-bound threads"), _SPIN_SIZE, _DURATION),
    ),
    Scenario(
        name="cpu-processes",
        script="cpu_processes.py",
        summary="Each process has its own interpreter and GIL, so processes run Python in parallel.",
        explanation=(
            "The same spinning as cpu-threads, in child processes. They share nothing but a block "
            "of counters; real programs pay for the separation with memory and with pickling "
            "whatever they send each other."
        ),
        look_for="N processes, each running on a core of its own.",
        options=(("--processes", 2, "CPU-bound child processes"), _SPIN_SIZE, _DURATION),
    ),
    Scenario(
        name="io-threads",
        script="io_threads.py",
        summary="A thread waiting on I/O has released the GIL, so threads suit I/O-bound work.",
        explanation=(
            "Each thread sends requests to a slow local service (a child process answering after "
            "--latency ms) and waits for the reply. While it waits in the kernel it holds no GIL, "
            "so many requests are in flight at once."
        ),
        look_for="Threads mostly blocked on I/O, the GIL mostly free, many requests in flight, little CPU.",
        options=(
            ("--threads", 16, "threads making requests"),
            ("--latency", 50.0, "ms the service takes to answer"),
            _DURATION,
        ),
    ),
    Scenario(
        name="convoy",
        script="convoy.py",
        summary="A CPU-bound thread slows an I/O-bound one: every time it wakes, it must wait for the GIL.",
        explanation=(
            "One thread makes quick round trips to a local echo service, thousands a second on its "
            "own. CPU-bound threads join one at a time (--ramp); from then on the I/O thread wakes "
            "from every wait to find the GIL taken and waits up to a switch interval to get it back."
        ),
        look_for=(
            "The I/O thread's short bursts, each preceded by a wait for the GIL; its round trips "
            "per second (the result) falling as CPU threads are added."
        ),
        options=(
            ("--cpu-threads", 2, "CPU-bound threads added next to the I/O thread"),
            ("--ramp", 3.0, "seconds between added CPU threads (0: all at once)"),
            ("--size", 50_000, "loop iterations per counted CPU loop"),
            _DURATION,
        ),
    ),
    Scenario(
        name="race",
        script="race.py",
        summary="The GIL does not make `x += 1` atomic: a switch can fall between read and write, losing updates.",
        explanation=(
            "Threads run `counter += step()` on one shared counter. That is several bytecodes, and "
            "the GIL may change hands between reading the counter and storing it back; the thread "
            "switched out then stores a stale value, wiping out whatever the others added meanwhile."
        ),
        look_for="Threads interleaving on the GIL, and a final count below the expected one (the result).",
        options=(("--threads", 4, "threads incrementing the counter"), _DURATION),
    ),
    Scenario(
        name="lock",
        script="lock.py",
        summary="A threading.Lock around the update fixes the race; contention on it is a lock wait, not a GIL wait.",
        explanation=(
            "The race scenario with each increment inside `with lock:`. A thread that loses the GIL "
            "while holding the lock leaves the others blocked on the lock itself, which the "
            "timeline tells apart from waiting for the GIL."
        ),
        look_for="Threads blocked on the lock, fewer increments per second than race, and no update lost.",
        options=(("--threads", 4, "threads incrementing the counter"), _DURATION),
    ),
    Scenario(
        name="native-release",
        script="native_release.py",
        summary="C code that releases the GIL (hashlib, zlib, numpy) runs in parallel even with the GIL.",
        explanation=(
            "Each thread hashes a large buffer with hashlib (or compresses it with zlib, or runs a "
            "numpy ufunc). These drop the GIL around their heavy loop, so the threads need it only "
            "for a moment between calls."
        ),
        look_for="Several threads on separate cores, in the native state at the same time.",
        options=(
            ("--threads", 2, "threads doing native work"),
            ("--size", 4, "MiB per buffer"),
            ("--work", "hash", "hash: hashlib.sha256; zlib: zlib.compress; numpy: numpy.sin (needs numpy)"),
            _DURATION,
        ),
    ),
    Scenario(
        name="asyncio",
        script="async_io.py",
        summary="Async code is concurrent in one thread; blocking calls are handed to a thread pool.",
        explanation=(
            "An event loop serves a slow local service and, on the same thread, runs client "
            "coroutines against it: while one awaits its answer, the loop runs the others. A call "
            "that can only block goes to a thread pool with run_in_executor."
        ),
        look_for="One busy event-loop thread; pool threads blocked on I/O.",
        options=(
            ("--tasks", 100, "client coroutines on the event loop"),
            ("--threads", 4, "pool threads making blocking requests"),
            ("--latency", 20.0, "ms the service takes to answer"),
            _DURATION,
        ),
    ),
    Scenario(
        name="pools",
        script="pools.py",
        summary="ThreadPoolExecutor against ProcessPoolExecutor on the same CPU work, and the cost of pickling.",
        explanation=(
            "The same pure-Python tasks go to a thread pool, then to a process pool, alternating "
            "every --phase seconds. The process pool runs them in parallel but first pickles each "
            "task's list of numbers and sends it to a child: work the thread pool never does "
            "(--rounds 1 makes the pickling dominate)."
        ),
        look_for=(
            "Threads taking turns on the GIL, then processes filling the cores, with pickling as "
            "extra work in the parent and the children; tasks per second for each pool (the result)."
        ),
        options=(
            ("--threads", 2, "workers in the thread pool"),
            ("--processes", 2, "workers in the process pool"),
            ("--size", 10_000, "numbers in each task's list (pickled)"),
            ("--rounds", 10, "passes over its list per task"),
            ("--pool", "both", "which pool(s) to run"),
            ("--phase", 5.0, "seconds on each pool before switching"),
            _DURATION,
        ),
    ),
    Scenario(
        name="many-threads",
        script="many_threads.py",
        summary="Every Python thread is a real OS thread, even when 99 of them only sleep.",
        explanation=(
            "A hundred threads wake now and then, count the wake-up and sleep again. Each is an OS "
            "thread with its own stack (the result counts them), yet together they need almost no "
            "CPU and rarely the GIL."
        ),
        look_for="A hundred lanes, almost all blocked in sleep, nearly no CPU.",
        options=(
            ("--threads", 100, "sleeping threads"),
            ("--sleep", 1.0, "seconds each nap lasts"),
            _DURATION,
        ),
    ),
    Scenario(
        name="switch-interval",
        script="switch_interval.py",
        summary="sys.setswitchinterval sets how long a thread waits for the GIL before asking for it.",
        explanation=(
            "CPU-bound threads spin while the main thread steps sys.setswitchinterval through the "
            "--interval values. A waiting thread asks the holder to let go once an interval has "
            "passed: a shorter interval means more hand-offs and a little more overhead."
        ),
        look_for="The GIL's hand-off rate following the interval as it changes every --step seconds.",
        options=(
            ("--threads", 2, "CPU-bound threads"),
            ("--interval", "1,5,20", "switch intervals in ms, comma-separated"),
            ("--step", 3.0, "seconds on each interval before the next (0: stay on the first)"),
            _SPIN_SIZE,
            _DURATION,
        ),
    ),
    Scenario(
        name="subinterpreters",
        script="subinterpreters.py",
        summary="From 3.12 each subinterpreter can have its own GIL (3.14: concurrent.interpreters).",
        explanation=(
            "Each thread runs pure-Python spinning inside an isolated subinterpreter with a GIL of "
            "its own, so the threads run in parallel within one process. Needs CPython 3.12 or "
            "later; on an older one the workload says so and exits with status 2."
        ),
        look_for="One process whose interpreter threads all run at once, on separate cores.",
        options=(("--interpreters", 2, "subinterpreters, one thread each"), _SPIN_SIZE, _DURATION),
        min_python=(3, 12),
    ),
    Scenario(
        name="free-threaded",
        script="free_threaded.py",
        summary="PEP 703 builds (3.13t, 3.14t) have no GIL: cpu-threads runs on all cores.",
        explanation=(
            "The cpu-threads workload on a free-threaded interpreter, where nothing makes the "
            "threads take turns. Needs a free-threaded build (pyenv install 3.13t, or uv python "
            "install 3.13t). On an interpreter with the GIL it warns and still runs, which shows "
            "the cpu-threads picture for contrast."
        ),
        look_for="All threads running at once, on all cores; no GIL waits.",
        options=(("--threads", 4, "CPU-bound threads"), _SPIN_SIZE, _DURATION),
        needs_free_threaded=True,
    ),
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _ALL}
DEFAULT_SCENARIO = "cpu-threads"


def _lookup(scenario: Scenario | str) -> Scenario:
    return SCENARIOS[scenario] if isinstance(scenario, str) else scenario


def script_path(scenario: Scenario | str) -> str:
    """Absolute path of the scenario's workload script."""
    return os.path.join(WORKLOADS_DIR, _lookup(scenario).script)


def check(scenario: Scenario | str, version_info: tuple, free_threaded: bool) -> str | None:
    """What the interpreter lacks for this scenario, and how to get it; None if nothing.

    For free-threaded the message is advice: the workload still runs with a GIL (and warns
    on stderr), showing the cpu-threads picture. Subinterpreters cannot run before 3.12
    (the workload exits with status 2).
    """
    scenario = _lookup(scenario)
    have = ".".join(str(part) for part in version_info[:2])
    if scenario.needs_free_threaded and not free_threaded:
        return (
            f"{scenario.name} needs a free-threaded CPython (3.13t or later), this is {have} with the GIL: "
            "install one (pyenv install 3.13t, or uv python install 3.13t) and pass --python 3.13t"
        )
    if tuple(version_info[:2]) < scenario.min_python:
        want = ".".join(str(part) for part in scenario.min_python)
        return (
            f"{scenario.name} needs CPython {want} or later, this is {have}: install it "
            f"(pyenv install {want}, or uv python install {want}) and pass --python {want}"
        )
    return None


def option_error(scenario: Scenario | str, args: list[str]) -> str | None:
    """What the scenario's own parser says of these options, in one line, before anything starts
    (run, the workload would print it among its output and exit 2). None when they parse, or when
    the parser cannot be loaded here (the run says then)."""
    import contextlib
    import importlib.util
    import io
    import sys

    scenario = _lookup(scenario)
    modules, path = set(sys.modules), list(sys.path)
    said = io.StringIO()
    try:
        sys.path.insert(0, WORKLOADS_DIR)  # (as run by path: its folder first, for `import _common`)
        spec = importlib.util.spec_from_file_location(f"_gilviz_scenario_{scenario.script[:-3]}", script_path(scenario))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            module.build_parser().parse_args(args)
    except SystemExit as e:
        complaint = [line for line in said.getvalue().splitlines() if "error: " in line]
        if e.code and complaint:
            return f"{scenario.name}: {complaint[-1].split('error: ', 1)[1]}; its options: `gilviz run {scenario.name} --help`"
    except Exception:
        pass
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:  # the workloads' own (_common...), not the library's
            if os.path.dirname(getattr(sys.modules[name], "__file__", None) or "") == WORKLOADS_DIR:
                del sys.modules[name]
    return None
