"""The built-in workloads, run directly (no sampling), and the registry that describes them.

Each workload runs for about half a second with small sizes, reporting progress on a pipe
as gilviz would read it. The race is also run on every CPython 3.10 to 3.15 found,
since from 3.10 a bare `x += 1` loop rarely loses updates and the workload must still.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import find_python, python_or_skip
from gilviz import scenarios

DURATION = "0.5"
TIMEOUT_S = 30

# Small sizes so that each run makes progress many times within DURATION.
SMALL_ARGS = {
    "cpu-threads": ["--threads", "2", "--size", "5000"],
    "cpu-processes": ["--processes", "2", "--size", "5000"],
    "io-threads": ["--threads", "4", "--latency", "5"],
    "convoy": ["--cpu-threads", "1", "--ramp", "0.2", "--size", "5000"],
    "race": ["--threads", "2"],
    "lock": ["--threads", "2"],
    "native-release": ["--threads", "2", "--size", "1"],
    "asyncio": ["--tasks", "5", "--threads", "2", "--latency", "5"],
    "pools": ["--size", "1000", "--rounds", "1", "--phase", "0.2"],
    "many-threads": ["--threads", "20", "--sleep", "0.05"],
    "switch-interval": ["--interval", "1,5", "--step", "0.2", "--size", "5000"],
    "subinterpreters": ["--interpreters", "2", "--size", "5000"],
    "free-threaded": ["--threads", "2", "--size", "5000"],
}

# The table of /work/shared/SCENARIOS.md, in its order.
EXPECTED_NAMES = [
    "cpu-threads", "cpu-processes", "io-threads", "convoy", "race", "lock", "native-release",
    "asyncio", "pools", "many-threads", "switch-interval", "subinterpreters", "free-threaded",
]  # fmt: skip


def python_at_least(minor: int) -> str | None:
    if sys.version_info[:2] >= (3, minor):
        return sys.executable
    return next(filter(None, (find_python(f"3.{m}") for m in range(minor, 20))), None)


def run_workload(name: str, *args: str, python: str = sys.executable, progress: bool = True):
    """Runs a workload to its end; returns (exit status, progress messages, stdout, stderr)."""
    env = dict(os.environ)
    env.pop(scenarios.PROGRESS_FD_ENV, None)
    read_fd, write_fd = os.pipe()
    if progress:
        env[scenarios.PROGRESS_FD_ENV] = str(write_fd)
    try:
        proc = subprocess.Popen(
            [python, scenarios.script_path(name), "--duration", DURATION, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            pass_fds=(write_fd,) if progress else (),
            start_new_session=True,
        )
        os.close(write_fd)
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
            except ProcessLookupError:
                pass
        os.set_blocking(read_fd, False)
        data = b""
        while True:
            try:
                chunk = os.read(read_fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
    messages = [json.loads(line) for line in data.decode().splitlines()]
    return proc.returncode, messages, out.decode(), err.decode()


def final_result(name: str, *args: str, python: str = sys.executable) -> dict:
    status, messages, _, err = run_workload(name, *args, python=python)
    assert status == 0, err
    return messages[-1]


def python_for(name: str) -> str:
    scenario = scenarios.SCENARIOS[name]
    python = python_at_least(scenario.min_python[1])
    if python is None:
        pytest.skip(f"{name} needs CPython {scenario.min_python}, none found")
    return python


@pytest.mark.parametrize("name", list(SMALL_ARGS))
def test_workload_reports_progress(name):
    status, messages, out, err = run_workload(name, *SMALL_ARGS[name], python=python_for(name))

    assert status == 0, err
    assert out == ""  # the summary goes to stdout only without the side channel
    assert messages, "no progress line"
    *running, final = messages
    assert final.get("final") is True
    assert final["done"] > 0
    assert running, "no progress before the end"
    assert len(running) <= float(DURATION) * 10 + 2  # at most ten a second
    # the scenarios with a result tell it as it changes (race: lost so far; convoy, pools,
    # switch-interval: the rate in each phase so far), so the screen shows it all along
    with_result = name in ("race", "lock", "convoy", "pools", "switch-interval")
    for message in running:
        assert set(message) == ({"done", "unit", "result"} if with_result else {"done", "unit"}), message
        if with_result:
            assert isinstance(message["result"], dict)
    done = [message["done"] for message in messages]
    assert done == sorted(done)  # cumulative
    assert all(isinstance(d, int) for d in done)
    assert len({message["unit"] for message in messages}) == 1


def test_summary_on_stdout_without_progress_fd():
    status, messages, out, err = run_workload("cpu-threads", *SMALL_ARGS["cpu-threads"], progress=False)

    assert status == 0, err
    assert messages == []
    assert len(out.splitlines()) == 1
    assert out.startswith("cpu-threads: ") and " loops in " in out


@pytest.mark.parametrize("minor", [10, 11, 12, 13, 14, 15])
def test_race_loses_updates(minor):
    python = python_or_skip(f"3.{minor}")

    result = final_result("race", *SMALL_ARGS["race"], python=python)["result"]

    assert result["expected"] == result["actual"] + result["lost"]
    assert result["lost"] > 0


def test_lock_loses_nothing():
    final = final_result("lock", *SMALL_ARGS["lock"])

    waits = final["result"].pop("lock waits")
    assert final["result"] == {"expected": final["done"], "actual": final["done"], "lost": 0}
    # (the times an adder found the lock taken: each of the done // 100 turns of the lock at most)
    assert waits <= final["done"] // 100, waits


def test_subinterpreters_refuses_python_before_3_12():
    python = sys.executable if sys.version_info < (3, 12) else (find_python("3.11") or find_python("3.10"))
    if python is None:
        pytest.skip("no CPython older than 3.12")

    status, messages, out, err = run_workload("subinterpreters", python=python)

    assert status == 2
    assert messages == [] and out == ""
    assert len(err.splitlines()) == 1 and "3.12" in err


def test_free_threaded_warns_on_a_gil_build():
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        pytest.skip("this interpreter has no GIL")

    status, messages, _, err = run_workload("free-threaded", *SMALL_ARGS["free-threaded"])

    assert status == 0 and messages[-1]["done"] > 0
    assert len(err.splitlines()) == 1 and "3.13t" in err


# --- the registry ---------------------------------------------------------------------


def test_registry_covers_every_scenario_in_order():
    assert list(scenarios.SCENARIOS) == EXPECTED_NAMES
    assert scenarios.DEFAULT_SCENARIO in scenarios.SCENARIOS
    assert set(SMALL_ARGS) == set(scenarios.SCENARIOS)


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_registry_entry_is_complete(name):
    scenario = scenarios.SCENARIOS[name]
    path = scenarios.script_path(scenario)

    assert scenario.name == name
    assert os.path.isabs(path) and os.path.isfile(path)
    assert path == scenarios.script_path(name)
    assert scenario.summary and "\n" not in scenario.summary
    assert scenario.explanation and scenario.look_for
    assert any(flag == "--duration" for flag, _, _ in scenario.options)
    with open(path) as script:
        assert script.read().startswith('"""'), "each workload starts with its docstring"


# Dumps each workload's argparse options, in a child so their imports stay out of ours.
_DUMP_OPTIONS = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
out = {}
for script in sys.argv[2:]:
    parser = importlib.import_module(script[:-3]).build_parser()
    out[script] = [[a.option_strings[-1], a.default, a.help] for a in parser._actions if a.dest != "help"]
print(json.dumps(out))
"""


def test_registry_options_match_the_workloads():
    scripts = [scenario.script for scenario in scenarios.SCENARIOS.values()]
    dumped = subprocess.run(
        [sys.executable, "-c", _DUMP_OPTIONS, scenarios.WORKLOADS_DIR, *scripts],
        capture_output=True, text=True, check=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    declared = json.loads(dumped.stdout)

    for scenario in scenarios.SCENARIOS.values():
        assert sorted(map(list, scenario.options)) == sorted(declared[scenario.script]), scenario.name


def test_check_says_what_is_missing():
    assert scenarios.check("cpu-threads", (3, 9, 18), False) is None
    assert scenarios.check("subinterpreters", (3, 12, 1), False) is None
    assert scenarios.check("free-threaded", (3, 13, 0), True) is None

    too_old = scenarios.check("subinterpreters", (3, 11, 7), False)
    with_gil = scenarios.check(scenarios.SCENARIOS["free-threaded"], (3, 13, 0), False)

    assert "3.12" in too_old and "--python" in too_old and "\n" not in too_old
    assert "3.13t" in with_gil and "--python" in with_gil and "\n" not in with_gil
