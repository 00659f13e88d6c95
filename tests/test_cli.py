"""The command line on bad input, interrupts, crashes and kills: one line, exit 2, nothing lost."""

import gzip
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gilviz.collect import load
from gilviz.report import summarize

GILVIZ = [sys.executable, "-m", "gilviz"]
SLEEPY = "import time\nfor _ in range(600): time.sleep(0.05)\n"


def gilviz(*args, cwd=None, timeout=60):
    return subprocess.run([*GILVIZ, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def assert_user_error(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gilviz: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_missing_script(tmp_path):
    assert_user_error(gilviz("record", "-o", str(tmp_path / "r"), "nope/missing.py"), "no script at nope/missing.py")


def test_unknown_scenario(tmp_path):
    assert_user_error(gilviz("record", "-o", str(tmp_path / "r"), "no-such-thing"), "gilviz scenarios")


def test_folder_is_not_a_script(tmp_path):
    assert_user_error(gilviz("record", "-o", str(tmp_path / "r"), str(tmp_path)), "is a folder")


def test_compiled_program_is_not_a_python_target(tmp_path):
    assert_user_error(gilviz("record", "-o", str(tmp_path / "r"), shutil.which("ls")), "not a Python script")


@pytest.mark.parametrize("spec,words", [
    ("/no/such/python", ["no interpreter at /no/such/python"]),
    ("2.5", ["no Python '2.5'"]),
    ("/bin/true", ["not a Python interpreter"]),
])
def test_interpreter_that_is_not_there(tmp_path, spec, words):
    assert_user_error(gilviz("record", "--python", spec, "-o", str(tmp_path / "r"), "-c", "pass"), *words)


def test_pid_that_is_gone(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert_user_error(gilviz("record", "-o", str(tmp_path / "r"), "--pid", str(proc.pid)), f"no process {proc.pid}")


def test_pid_of_a_zombie(tmp_path):
    proc = subprocess.Popen(["true"])  # not waited for: a zombie
    try:
        deadline = time.monotonic() + 10
        while open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for command in ("record", "attach"):
            args = ("record", "-o", str(tmp_path / "r"), "--pid") if command == "record" else ("attach",)
            assert_user_error(gilviz(*args, str(proc.pid)), f"process {proc.pid} is not a running program", "zombie")
        assert not (tmp_path / "r").exists()
    finally:
        proc.wait()


def test_pid_that_is_not_python(tmp_path):
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert_user_error(gilviz("record", "-o", str(tmp_path / "r"), "--pid", str(proc.pid)), "not CPython")
    finally:
        proc.kill()
        proc.wait()


def test_corrupt_and_missing_recordings(tmp_path):
    bad = tmp_path / "bad.gilviz"
    bad.write_bytes(b"\x1f\x8b" + os.urandom(300))
    assert_user_error(gilviz("report", str(bad)), "not a gilviz recording")
    text = tmp_path / "text.gilviz"
    text.write_text("hello\n")
    assert_user_error(gilviz("report", str(text)), "not a gilviz recording")
    not_ours = tmp_path / "other.gz"
    not_ours.write_bytes(gzip.compress(b'{"some": "json"}\n'))
    assert_user_error(gilviz("report", str(not_ours)), "no header")
    assert_user_error(gilviz("report", str(tmp_path / "missing.gilviz")), "no recording at")


def test_a_scenarios_wrong_option_is_said_before_anything_starts(tmp_path):
    out = tmp_path / "r.gilviz"
    for command in (["record", "-o", str(out)], ["run"], ["compare", "--record", str(out), "cpu-threads", "--"]):
        assert_user_error(gilviz(*command, "cpu-threads", "--threads", "abc"),
                          "cpu-threads: argument --threads: invalid positive_int value: 'abc'",
                          "gilviz run cpu-threads --help")
    assert not out.exists()


def test_a_target_that_fails_says_why_beside_its_status(tmp_path):
    result = gilviz("record", "-o", str(tmp_path / "r.gilviz"), "-m", "no_module_of_this_name")
    assert result.returncode == 0  # (a run that ended by itself, recorded: its status, with --exit-code)
    assert "exit status 1: " in result.stderr and "No module named no_module_of_this_name" in result.stderr


def test_what_cannot_be_done_says_what_can(tmp_path):
    replay = str(Path(__file__).parent / "data" / "race.gilviz")
    assert_user_error(gilviz("replay", replay), "needs a terminal", f"gilviz report {replay}", "gilviz export")
    assert_user_error(gilviz("run", "-c", "pass"), "needs a terminal", "gilviz record")
    for force in ([], ["--force"]):
        assert_user_error(gilviz("record", "-o", str(tmp_path), *force, "-c", "pass"), "is a folder")
        assert_user_error(gilviz("compare", "--record", str(tmp_path), *force, "-c", "pass", "--", "-c", "pass"),
                          "is a folder")
    for command in (["record", "-o", "", "-c", "pass"], ["export", replay, "--format", "perfetto", "-o", ""],
                    ["compare", "--record", "", "-c", "pass", "--", "-c", "pass"]):
        assert_user_error(gilviz(*command, cwd=tmp_path), "needs a value, not an empty one")
    assert not list(tmp_path.iterdir())  # (not the default name in its stead)
    there = tmp_path / "there.gilviz"
    there.write_bytes(b"keep")
    assert_user_error(gilviz("compare", "--record", str(there), "-c", "pass", "--", "-c", "pass"),
                      "exists; give another file, or --force")
    assert there.read_bytes() == b"keep"


def _start_record(tmp_path, *target):
    out = tmp_path / "run.gilviz"
    proc = subprocess.Popen([*GILVIZ, "record", "-o", str(out), *target], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    # wait for the recording to hold its first ticks
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if out.exists() and out.stat().st_size > 2000:
            break
        time.sleep(0.1)
    return proc, out


def _workload_pid(out) -> int:
    return load(str(out)).header.pid


def test_ctrl_c_keeps_the_recording_and_ends_the_workload(tmp_path):
    proc, out = _start_record(tmp_path, "-c", SLEEPY)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    rec = load(str(out))
    assert rec.end is not None and rec.end.reason == "interrupted"
    assert len(rec.ticks) > 100
    assert not os.path.exists(f"/proc/{rec.header.pid}")


def test_sigterm_ends_like_ctrl_c(tmp_path):
    proc, out = _start_record(tmp_path, "-c", SLEEPY)
    proc.terminate()
    proc.communicate(timeout=15)
    rec = load(str(out))
    assert rec.end.reason == "interrupted"
    assert not os.path.exists(f"/proc/{rec.header.pid}")


def test_sigterm_to_the_live_view_gives_the_terminal_back_and_ends_the_workload(tmp_path):
    """In a terminal (a pseudo-terminal here): the app leaves its screen, mouse and hidden cursor
    behind it as q does, where the default of SIGTERM left them on."""
    import fcntl
    import pty
    import struct
    import termios

    marker = tmp_path / "pid"
    code = f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    pid, fd = pty.fork()
    if pid == 0:  # the child: gilviz in a terminal of 120x40
        try:
            os.environ["TERM"] = "xterm-256color"
            os.execv(sys.executable, [*GILVIZ, "run", "-c", code])
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    screen = bytearray()
    deadline = time.monotonic() + 60

    def read_for(seconds: float) -> bool:
        """Reads what the app sends; False once it closed the terminal."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return False
                if not data:
                    return False
                screen.extend(data)
        return True

    try:
        while not (marker.exists() and marker.read_text() and b"\x1b[?1049h" in screen):
            assert read_for(0.1) and time.monotonic() < deadline, bytes(screen[-500:])
        workload = int(marker.read_text())
        read_for(1.0)  # some frames
        os.kill(pid, signal.SIGTERM)
        while read_for(0.5) and time.monotonic() < deadline:
            pass
        _, status = os.waitpid(pid, 0)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM, status
    after = bytes(screen[screen.rindex(b"\x1b[?1049h"):])
    for restored in (b"\x1b[?1049l", b"\x1b[?25h", b"\x1b[?1000l"):  # its screen, its cursor, the mouse
        assert restored in after, restored
    assert not os.path.exists(f"/proc/{workload}"), "the workload outlived gilviz"


def test_workloads_get_the_open_files_limit_gilviz_was_given(tmp_path):
    """The sampler raises its own to the hard limit once its workload started; the second run of a
    comparison, started after, still gets the limit gilviz was given."""
    import resource

    from gilviz.collect import Recording, replay_file

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"a hard limit of {hard} open files leaves nothing to raise")
    out = tmp_path / "limits.gilviz"
    code = "import resource, time\nprint('limit', resource.getrlimit(resource.RLIMIT_NOFILE)[0])\ntime.sleep(0.3)\n"
    result = subprocess.run([*GILVIZ, "compare", "--record", str(out), "-c", code, "--", "-c", code],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard)))
    assert result.returncode == 0, result.stderr
    for run in (0, 1):
        rec = replay_file(str(out), Recording(), run=run)
        assert "limit 512\n" in "".join(o.data for o in rec.output), (run, rec.output)


def test_out_of_open_files_is_said_in_one_line_and_what_was_sampled_kept(tmp_path):
    """The sampler keeps files of each thread open: at 100 files, 300 threads are too many. They
    start one by one, so that some ticks were sampled before."""
    import resource

    out = tmp_path / "many.gilviz"
    code = ("import threading, time\nfor _ in range(300):\n"
            "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n    time.sleep(0.01)\n")
    result = subprocess.run([*GILVIZ, "record", "-o", str(out), "--duration", "10", "-c", code],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100)))
    assert_user_error(result, "out of open files", "may open 100 at most", "ulimit -n")
    rec = load(str(out))
    assert rec.ticks and rec.end is not None and rec.end.reason == "error"
    assert not os.path.exists(f"/proc/{rec.header.pid}"), "the workload outlived gilviz"


def test_killed_gilviz_leaves_a_readable_recording_and_no_workload(tmp_path):
    proc, out = _start_record(tmp_path, "-c", SLEEPY)
    time.sleep(1.5)
    pid = _workload_pid(out)
    proc.kill()
    proc.communicate(timeout=10)
    rec = load(str(out))  # truncated mid-stream: still reads up to the last flush
    assert rec.truncated
    # killed 1.5 s after the recording held its first ticks: at most the last half second is lost
    assert rec.ticks[-1].t - rec.ticks[0].t > 1_000_000, (rec.ticks[0].t, rec.ticks[-1].t)
    summary = summarize(rec)
    assert summary["truncated"] and summary["end"]["reason"] == "truncated"
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the workload outlived a killed gilviz"


@pytest.mark.parametrize("end, status, said", [("sys.exit(3)", 3, "exit status 3"),
                                               ("os.kill(os.getpid(), 9)", -9, "killed by SIGKILL"),
                                               ("os.kill(os.getpid(), 11)", -11, "killed by SIGSEGV")])
def test_crashing_workload_is_recorded_with_its_status(tmp_path, end, status, said):
    """As the OOM killer's SIGKILL, too: the status is the workload's, not its keeper's."""
    out = tmp_path / "crash.gilviz"
    code = f"import os, time, sys\ntime.sleep(0.5)\nprint('about to fail', flush=True)\n{end}\n"
    result = gilviz("record", "--exit-code", "-o", str(out), "-c", code)
    assert result.returncode == (status if status > 0 else 128 - status), result.stderr
    rec = load(str(out))
    assert rec.end.reason == "exited" and rec.end.exit_code == status
    assert "about to fail" in "".join(o.data for o in rec.output if o.stream == "out")
    report = gilviz("report", str(out))
    assert report.returncode == 0 and said in report.stdout


def test_report_json_has_the_documented_fields(tmp_path):
    out = tmp_path / "r.gilviz"
    assert gilviz("record", "-o", str(out), "--duration", "1", "-c", SLEEPY).returncode == 0
    import json

    data = json.loads(gilviz("report", str(out), "--json").stdout)
    assert set(data["target"]) >= {"command", "pid", "python", "gil"}
    assert data["target"]["gil"] is True
    assert 0.9 < data["duration_s"] < 1.5
    # 200 ticks/s and 1000+ GIL samples/s asked; a busy machine may give the sampler less
    assert data["tick_hz"] > 100 and data["gil_sample_hz"] > 500
    assert set(data["gil"]) == {"held", "contended", "handoffs_per_s"}
    thread = data["threads"][0]
    assert set(thread) >= {"tid", "name", "pid", "running", "native", "waiting", "runnable", "blocked",
                           "blocked_by", "gil_held", "cpu_s"}
    states = ("running", "native", "waiting", "runnable", "blocked")
    assert abs(sum(thread[s] for s in states) - 1) < 0.002
    assert abs(sum(thread["blocked_by"].values()) - thread["blocked"]) < 0.002
    assert thread["blocked_by"]["sleep"] > 0.9
    assert {"cpu", "busy", "by_target"} <= set(data["cores"][0])
    assert data["sampler"]["cpu_s"] > 0 and 0 < data["sampler"]["overhead"] < 1


def _copy_importable(dest):
    """gilviz and what it imports, where an unprivileged user can read them."""
    import elftools
    import psutil

    import gilviz as pkg

    for mod in (pkg, psutil, elftools):
        src = os.path.dirname(mod.__file__)
        shutil.copytree(src, dest / os.path.basename(src), ignore=shutil.ignore_patterns("__pycache__"))
    for root, dirs, files in os.walk(dest):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_no_ptrace_permission_says_how_to_grant_it(tmp_path):
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None or shutil.which("setpriv") is None:
        pytest.skip("needs /usr/bin/python3 and setpriv to run gilviz as an unprivileged user")
    # pytest's tmp_path lies in a folder only root may enter
    top = Path(tempfile.mkdtemp(prefix="gilviz-perm-"))
    os.chmod(top, 0o755)
    lib = top / "lib"
    lib.mkdir()
    _copy_importable(lib)
    target = subprocess.Popen([sys.executable, "-c", SLEEPY])
    try:
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", system_python, "-m", "gilviz",
             "record", "-o", "/dev/null", "--pid", str(target.pid)],
            capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"},
            cwd=str(top),
        )
    finally:
        target.kill()
        target.wait()
        shutil.rmtree(top)
    assert_user_error(result, f"no permission to read process {target.pid}", "CAP_SYS_PTRACE", "ptrace_scope")


def test_scenarios_are_listed_with_their_point_and_options():
    from gilviz.scenarios import SCENARIOS

    result = gilviz("scenarios")
    assert result.returncode == 0
    for name, scenario in SCENARIOS.items():
        assert f"{name:<16} {scenario.summary}" in result.stdout
    assert "--threads 4" in result.stdout


def test_scenario_help_says_what_to_look_for():
    from gilviz.scenarios import SCENARIOS

    result = gilviz("record", "convoy", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("convoy: " + SCENARIOS["convoy"].summary)
    assert "What to look for:" in result.stdout and "--cpu-threads" in result.stdout


def test_free_threaded_version_that_is_not_there():
    assert_user_error(gilviz("record", "--python", "3.99t", "-c", "pass"), "no Python '3.99t'", "pyenv install 3.99t")


def test_attach_to_a_running_process_and_leave_it_running(tmp_path):
    code = ("import threading, time\n"
            "def spin():\n    while True: pass\n"
            "for i in range(2): threading.Thread(target=spin, daemon=True).start()\n"
            "time.sleep(60)\n")
    target = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.5)
        out = tmp_path / "attach.gilviz"
        result = gilviz("record", "-o", str(out), "--duration", "1", "--pid", str(target.pid))
        assert result.returncode == 0 and "the duration passed, the process runs on" in result.stderr, result.stderr
        summary = summarize(load(str(out)))
        assert summary["target"]["pid"] == target.pid
        assert summary["gil_status"] == "located" and summary["gil"]["held"] > 0.9
        spinners = [t for t in summary["threads"] if t["cpu_s"] > 0.2]
        assert len(spinners) == 2
        assert target.poll() is None, "gilviz ended a process it only attached to"
    finally:
        target.kill()
        target.wait()


def test_compare_needs_two_targets():
    assert_user_error(gilviz("compare", "cpu-threads"), "two targets split by --")
    assert_user_error(gilviz("compare", "cpu-threads", "--"), "each side of compare needs a target")
    assert_user_error(gilviz("compare", "cpu-threads", "--", "--pid", "1"), "not --pid")
    assert_user_error(gilviz("compare", "cpu-threads", "--", "nope.py"), "no script at nope.py")
    assert_user_error(gilviz("compare", "cpu-threads", "--threads", "2"), "two targets")


def test_compare_records_both_runs_without_a_screen_and_reports_the_ratio(tmp_path):
    import json

    out = tmp_path / "both.gilviz"
    result = gilviz("compare", "--record", str(out), "--rate", "100", "--duration", "1", "-c", SLEEPY,
                    "--", "--duration", "1", "cpu-threads", "--threads", "2", timeout=60)
    assert result.returncode == 0 and "recorded 2 runs" in result.stderr, result.stderr
    text = gilviz("report", str(out))
    assert text.returncode == 0 and "== A: python -c" in text.stdout and "== B: cpu-threads --threads 2" in text.stdout
    assert "no ratio" in text.stdout  # one sleeps and counts nothing, the other counts loops
    data = json.loads(gilviz("report", "--json", str(out)).stdout)
    assert len(data["runs"]) == 2 and data["compare"]["ratio"] is None
    assert data["runs"][1]["throughput"]["unit"] == "loops"
    assert_user_error(gilviz("compare", "--record", str(out), "-c", "pass", "--", "-c", "pass"), "exists", "--force")


def test_compare_names_each_side_by_its_interpreter_when_given(tmp_path):
    first, second = tmp_path / "versions.gilviz", tmp_path / "twice.gilviz"
    result = gilviz("compare", "--record", str(first), "--python", sys.executable, "-c", "pass",
                    "--", "-c", "pass", timeout=60)
    assert result.returncode == 0, result.stderr
    report = gilviz("report", str(first)).stdout
    python = os.path.basename(sys.executable)
    assert f"== A: python -c pass on {python}\n" in report and "== B: python -c pass\n" in report, report
    result = gilviz("compare", "--record", str(second), "-c", "pass", "--", "--rate", "100", "-c", "pass", timeout=60)
    assert result.returncode == 0, result.stderr
    report = gilviz("report", str(second)).stdout
    assert "== A: python -c pass (A)\n" in report and "== B: python -c pass (B)\n" in report, report


def test_compare_together_runs_both_at_once_and_says_so(tmp_path):
    from gilviz.recording import read
    from gilviz.stream import End, Header

    def spans(path):
        """Each run's time on CLOCK_MONOTONIC: from its time 0 to its end."""
        out = []
        for run in (0, 1):
            records = list(read(str(path), run=run))
            start = next(r for r in records if isinstance(r, Header)).monotonic_ns
            end = next(r for r in records if isinstance(r, End)).t
            out.append((start, start + end * 1000))
        return out

    after, together = tmp_path / "after.gilviz", tmp_path / "together.gilviz"
    for path, lead in ((after, []), (together, ["--together"])):
        result = gilviz("compare", *lead, "--record", str(path), "--duration", "1", "-c", SLEEPY,
                        "--", "--duration", "1", "-c", SLEEPY, timeout=60)
        assert result.returncode == 0, result.stderr
    (a0, a1), (b0, b1) = spans(after)
    assert b0 >= a1  # one after the other
    (a0, a1), (b0, b1) = spans(together)
    assert b0 < a1 and a0 < b1  # at the same time
    assert "run together, sharing the cores" in gilviz("report", str(together)).stdout


def _runs_in(path) -> list[set[str]]:
    """The kinds of record each run of a comparison's file holds so far (a file being written reads
    up to its last whole member)."""
    from gilviz.recording import iter_records

    kinds: list[set[str]] = [set(), set()]
    try:
        for rec in iter_records(str(path)):
            if rec.get("run") in (0, 1):
                kinds[rec["run"]].add(rec["k"])
    except Exception:  # not yet a recording: nothing written
        pass
    return kinds


def _killed_compare(tmp_path, side_a, side_b, ready, timeout=30):
    """gilviz compare --record, killed with SIGKILL as soon as `ready()` holds: the recording."""
    out = tmp_path / "killed.gilviz"
    proc = subprocess.Popen([*GILVIZ, "compare", "--record", str(out), *side_a, "--", *side_b],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not ready(out):
            assert proc.poll() is None, "gilviz compare ended before it was killed"
            assert time.monotonic() < deadline, "the comparison never got that far"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return out


def _section(report: str, letter: str) -> str:
    """One run's part of a comparison's report."""
    return report.split(f"== {letter}: ", 1)[1].split("\n== ", 1)[0].split("\ncompare ", 1)[0]


def test_compare_killed_during_run_a_reports_what_it_holds(tmp_path):
    import json

    out = _killed_compare(tmp_path, ["--duration", "10", "cpu-threads", "--threads", "2"],
                          ["--duration", "1", "-c", SLEEPY], ready=lambda path: "progress" in _runs_in(path)[0])
    assert _runs_in(out)[1] == set()  # run B never began
    report = gilviz("report", str(out))
    assert report.returncode == 0, report.stderr
    a, b = _section(report.stdout, "A"), _section(report.stdout, "B")
    assert "work      " in a and " loops (" in a and "(recording truncated)" in a, a
    assert "not begun the recording was cut short before this run began" in b, b
    assert "compare   no ratio: run B was cut short before it began (run one after the other; run A was cut short)" \
        in report.stdout
    data = json.loads(gilviz("report", "--json", str(out)).stdout)
    assert data["compare"]["began"] == [True, False] and data["runs"][1] is None
    assert data["runs"][0]["truncated"] and data["runs"][0]["throughput"]["unit"] == "loops"
    trace = tmp_path / "a.trace.json"
    export = gilviz("export", str(out), "--format", "perfetto", "-o", str(trace))
    assert export.returncode == 0 and "of run A only (run B was cut short before it began)" in export.stderr, \
        export.stderr
    assert json.loads(trace.read_text())["traceEvents"]
    assert_user_error(gilviz("export", str(out), "--format", "svg", "-o", str(tmp_path / "a.svg")),
                      "holds run A only", "--format perfetto")
    assert not (tmp_path / "a.svg").exists()


def test_compare_killed_during_run_b_reports_run_a_whole_and_b_as_far_as_it_got(tmp_path):
    """Killed as run B's workload runs its first line: run A's end and B's header reach the file as
    they are written, so A is whole and B cut short (or, should gilviz have been slower than B's
    first line, not begun: the report says which)."""
    import json

    mark = tmp_path / "b-started"
    out = _killed_compare(tmp_path, ["--duration", "1", "cpu-threads", "--threads", "2"],
                          ["--duration", "10", "-c", f"open({str(mark)!r}, 'w').close()\n" + SLEEPY],
                          ready=lambda path: mark.exists())
    b_began = "header" in _runs_in(out)[1]
    report = gilviz("report", str(out))
    assert report.returncode == 0, report.stderr
    a, b = _section(report.stdout, "A"), _section(report.stdout, "B")
    assert "work      " in a and "ended     duration" in a and "truncated" not in a, a  # (its --duration)
    if b_began:
        assert "(recording truncated)" in b and "run B was cut short)" in report.stdout, report.stdout
    else:
        assert "not begun the recording was cut short before this run began" in b, b
        assert "no ratio: run B was cut short before it began" in report.stdout, report.stdout
    data = json.loads(gilviz("report", "--json", str(out)).stdout)
    assert data["compare"]["began"] == [True, b_began]
    assert not data["runs"][0]["truncated"] and data["runs"][0]["throughput"]["unit"] == "loops"
    assert data["runs"][1] is None if not b_began else data["runs"][1]["truncated"]
    export = gilviz("export", str(out), "--format", "perfetto", "-o", str(tmp_path / "b.trace.json"))
    assert export.returncode == 0, export.stderr
    assert ("of run A only" in export.stderr) == (not b_began), export.stderr


def test_compare_recording_cut_before_run_b_began_is_reported_and_exported_as_run_a(tmp_path):
    """The comparison fixture as a kill leaves it when run B's header was not yet flushed: run A
    whole in its members, then half a member."""
    import json
    import zlib

    from gilviz.report import summarize_file

    whole = Path(__file__).parent / "data" / "compare.gilviz"
    lines = zlib.decompress(whole.read_bytes(), 31).splitlines(keepends=True)
    b_header = next(i for i, line in enumerate(lines) if b'"run":1' in line and b'"k":"header"' in line)

    def member(text: bytes) -> bytes:
        z = zlib.compressobj(1, zlib.DEFLATED, 31)
        return z.compress(text) + z.flush()

    rest = member(b"".join(lines[b_header:]))
    cut = tmp_path / "cut.gilviz"
    cut.write_bytes(member(lines[0]) + member(b"".join(lines[1:b_header])) + rest[: len(rest) // 2])
    report = gilviz("report", str(cut))
    assert report.returncode == 0, report.stderr
    assert "ended     exited, exit status 0" in _section(report.stdout, "A"), report.stdout
    assert "not begun the recording was cut short before this run began" in _section(report.stdout, "B")
    assert "compare   no ratio: run B was cut short before it began (run one after the other)\n" in report.stdout + "\n"
    data = json.loads(gilviz("report", "--json", str(cut)).stdout)
    assert data["runs"] == [summarize_file(str(whole), 0), None] and data["compare"]["began"] == [True, False]
    assert data["compare"]["per_s"][0] == data["runs"][0]["throughput"]["per_s"] and data["compare"]["ratio"] is None
    export = gilviz("export", str(cut), "--format", "perfetto", "-o", str(tmp_path / "cut.trace.json"))
    assert export.returncode == 0 and "of run A only" in export.stderr, export.stderr
    for fmt in ("svg", "asciicast"):
        assert_user_error(gilviz("export", str(cut), "--format", fmt, "-o", str(tmp_path / f"cut.{fmt}")),
                          "holds run A only (run B was cut short before it began)", "--format perfetto")
    # a file cut before run A began holds no run to export
    cut.write_bytes(member(lines[0]))
    assert gilviz("report", str(cut)).returncode == 0
    assert_user_error(gilviz("export", str(cut), "--format", "perfetto", "-o", str(tmp_path / "none.json")),
                      "holds no run A")
