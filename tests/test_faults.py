"""Programs that misbehave, disks that fill, hands that slip: no hang, no orphan, no traceback,
nothing overwritten. Real processes and real signals throughout; a real tiny tmpfs where the
machine lets us mount one, else a file-size limit that makes writes fail the same way."""

import io
import itertools
import json
import resource
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from gilviz import recording
from gilviz.collect import load
from gilviz.stream import Tick
from test_cli import GILVIZ, SLEEPY, assert_user_error, gilviz

# A workload that starts children every way a program can: a plain subprocess, one in a
# session of its own, and a double-forked daemon in a new session; it writes their pids.
FAMILY = """
import os, subprocess, sys, time
pids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]).pid,
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True).pid]
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)"])
    os._exit(0)
os.close(w)
pids.append(int(os.read(r, 20)))
pids.append(os.getpid())
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(" ".join(map(str, pids)))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""

# Ignores SIGINT and SIGTERM, and so does its child.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                          "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
with open(sys.argv[1], "w") as f:
    f.write(f"{child.pid} {__import__('os').getpid()}")
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def all_gone(pids, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def wait_for_file(path: Path, within: float = 20.0) -> str:
    deadline = time.monotonic() + within
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"
    return path.read_text()


def script(tmp_path, name, code) -> Path:
    path = tmp_path / name
    path.write_text(code)
    return path


# ----------------------------------------------------------------- 1. no hang
def test_a_forked_child_in_a_new_session_neither_hangs_the_recording_nor_outlives_it(tmp_path):
    code = ("import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    open(sys.argv[1], 'w').write(str(os.getpid()))\n"
            "    while True: pass\ntime.sleep(1)\n")
    out = tmp_path / "x.gilviz"
    pid_file = tmp_path / "child"
    started = time.monotonic()
    result = gilviz("record", "-o", str(out), str(script(tmp_path, "t.py", code)), str(pid_file), timeout=30)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    rec = load(str(out))
    assert rec.end is not None and rec.end.reason == "exited"
    assert all_gone([int(pid_file.read_text())])


# ----------------------------------------------------------------- 2. no orphan after kill -9
@pytest.mark.parametrize("command", ["record", "_sample"])
def test_kill_9_of_the_sampler_ends_every_process_the_workload_started(tmp_path, command):
    """`record`, and the live view's sampler process (`_sample`): the workload's parent is a
    keeper that ends all of its descendants when the sampler is gone, however it went."""
    pids_file = tmp_path / "pids"
    target = [str(script(tmp_path, "family.py", FAMILY)), str(pids_file)]
    args = ["record", "-o", str(tmp_path / "r.gilviz"), *target] if command == "record" else ["_sample", *target]
    proc = subprocess.Popen([*GILVIZ, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        pids = [int(p) for p in wait_for_file(pids_file).split()]
        assert len(pids) == 4 and all(alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    assert all_gone(pids), [p for p in pids if alive(p)]


def test_the_workload_ending_ends_what_it_started(tmp_path):
    code = FAMILY.rsplit("time.sleep(300)\n", 1)[0] + "time.sleep(1)\n"  # the workload ends after a second
    pids_file = tmp_path / "pids"
    result = gilviz("record", "-o", str(tmp_path / "r.gilviz"), str(script(tmp_path, "f.py", code)), str(pids_file))
    assert result.returncode == 0, result.stderr
    assert all_gone(int(p) for p in pids_file.read_text().split())


# ----------------------------------------------------------------- 3. a second Ctrl-C
def test_a_second_ctrl_c_ends_at_once_and_keeps_the_recording(tmp_path):
    out, pids_file = tmp_path / "r.gilviz", tmp_path / "pids"
    proc = subprocess.Popen([*GILVIZ, "record", "-o", str(out), str(script(tmp_path, "s.py", STUBBORN)),
                             str(pids_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = [int(p) for p in wait_for_file(pids_file).split()]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # inside the polite shutdown, which waits for a workload that will not listen
    asked = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert time.monotonic() - asked < 3, "the second Ctrl-C did not hurry the shutdown"
    assert proc.returncode == 0 and "Traceback" not in err, err
    rec = load(str(out))
    assert rec.end is not None and rec.end.reason == "interrupted"
    assert all_gone(pids)


# ----------------------------------------------------------------- 4. one line, never a traceback
def test_a_device_that_is_full_from_the_start(tmp_path):
    result = gilviz("record", "--force", "-o", "/dev/full", "-c", SLEEPY)
    assert_user_error(result, "cannot write the recording /dev/full", "disk is full", "target was ended")


def _small_disk(tmp_path):
    """A 200 KB tmpfs, or (if mounting is not allowed here) a file-size limit of 50 KB."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], check=True,
                       capture_output=True)
        return mount, None, lambda: subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))  # noqa: E731
        return mount, limit, lambda: None


def test_a_disk_that_fills_while_recording(tmp_path):
    mount, limit, cleanup = _small_disk(tmp_path)
    try:
        if limit is None:
            (mount / "filler").write_bytes(bytes(150_000))  # leave about 50 KB
        out = mount / "r.gilviz"
        started = time.monotonic()
        result = subprocess.run([*GILVIZ, "record", "-o", str(out), "many-threads"],
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                                preexec_fn=limit)
        assert_user_error(result, f"cannot write the recording {out}", "target was ended", "written before it is kept")
        assert ("disk is full" if limit is None else "size allowed") in result.stderr
        assert time.monotonic() - started < 60
        rec = load(str(out))  # what reached the disk reads
        assert len(rec.ticks) > 10 and rec.truncated
        assert all_gone([rec.header.pid])
    finally:
        cleanup()


@pytest.mark.parametrize("option, value", [("--rate", "nan"), ("--rate", "inf"), ("--duration", "nan"),
                                           ("--gil-rate", "-5"), ("--budget", "0"), ("--rate", "abc")])
def test_numbers_that_are_not(tmp_path, option, value):
    assert_user_error(gilviz("record", "-o", str(tmp_path / "r"), option, value, "-c", "pass"), option)
    assert not (tmp_path / "r").exists()


def _write_records(path, records):
    import gzip

    with gzip.open(path, "wt") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")


HEADER = {"k": "header", "format": 1, "pid": 1, "cpus": 2, "command": "demo.py"}
GOOD_TICK = {"k": "tick", "t": 5000, "dt": 5000, "th": [[2, 0, 5000, 0, 0, 0, 0, 0, 0, 0, 5000, 5000]], "g": [], "c": []}


@pytest.mark.parametrize("header, words", [({"k": "header", "format": "1", "pid": 1}, "format"),
                                           ({"k": "header"}, "names no process"),
                                           ({"k": "header", "format": 1, "pid": "1"}, "names no process"),
                                           ({"k": "header", "format": 1, "pid": 1, "cpus": "2"}, "damaged")])
def test_a_header_of_the_wrong_shape_is_refused(tmp_path, header, words):
    bad = tmp_path / "bad.gilviz"
    _write_records(bad, [header, GOOD_TICK])
    for args in (["report"], ["report", "--json"], ["replay"], ["export", "--format", "perfetto"]):
        assert_user_error(gilviz(*args, str(bad)), "not a gilviz recording", words)


@pytest.mark.parametrize("damaged", [
    {"k": "tick"},  # a tick without fields
    {"k": "tick", "t": 10000, "dt": 5000, "th": [["x", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], "g": [], "c": []},
    {"k": "thread", "pid": 1, "name": "no tid"},  # a thread without tid
    {"k": "stack", "t": 0, "pid": 1, "threads": [{"name": "no tid"}]},
    "not even an object",
])
def test_damaged_records_are_skipped_and_counted(tmp_path, damaged):
    from gilviz.timeline.store import History
    from gilviz.sources import ReplaySource

    path = tmp_path / "damaged.gilviz"
    _write_records(path, [HEADER, {"k": "thread", "tid": 2, "pid": 1, "name": "w"}, damaged, GOOD_TICK,
                          {"k": "end", "t": 5000, "reason": "exited", "exit_code": 0}])
    report = gilviz("report", str(path))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    assert "1 damaged records skipped" in report.stdout
    data = json.loads(gilviz("report", "--json", str(path)).stdout)
    assert data["damaged_records"] == 1 and data["threads"][0]["running"] == 1.0
    history = History()  # what the live view does with the same records on replay
    ReplaySource(str(path), speed=0).run(history.add)
    assert history.end is not None and len(history.times) == 1


# ----------------------------------------------------------------- 5. nothing overwritten
def test_an_existing_file_is_not_written_over_unasked(tmp_path):
    out = tmp_path / "keep.gilviz"
    out.write_bytes(b"precious")
    assert_user_error(gilviz("record", "-o", str(out), "-c", "pass"), "exists", "--force")
    assert out.read_bytes() == b"precious"
    result = gilviz("record", "--force", "-o", str(out), "-c", "pass")
    assert result.returncode == 0, result.stderr
    assert load(str(out)).end is not None


def test_a_refused_pid_leaves_the_file_untouched(tmp_path):
    out = tmp_path / "keep.gilviz"
    out.write_bytes(b"precious")
    proc = subprocess.Popen(["sleep", "30"])
    try:
        for extra in ([], ["--force"]):
            assert_user_error(gilviz("record", *extra, "-o", str(out), "--pid", str(proc.pid)), "not CPython")
            assert out.read_bytes() == b"precious"
    finally:
        proc.kill()
        proc.wait()
    missing = tmp_path / "new.gilviz"
    assert_user_error(gilviz("record", "-o", str(missing), "--pid", str(proc.pid)), "no process")
    assert not missing.exists()


def test_the_script_being_run_is_never_written_over(tmp_path):
    target = script(tmp_path, "s.py", "print('hi')\n")
    for extra in ([], ["--force"]):
        assert_user_error(gilviz("record", *extra, "-o", str(target), str(target)), "is the program being run")
        assert target.read_text() == "print('hi')\n"
    package = tmp_path / "pkg"
    package.mkdir()
    main = script(package, "__main__.py", "print('hi')\n")
    for module, path in (("s", target), ("pkg", main)):  # run as `python -m`, found in the folder it runs in
        assert_user_error(gilviz("record", "--force", "-o", str(path), "-m", module, cwd=tmp_path),
                          "is the program being run")
        assert path.read_text() == "print('hi')\n"


def test_default_names_never_collide(tmp_path):
    for _ in range(2):
        assert gilviz("record", "-c", "pass", cwd=tmp_path).returncode == 0
    made = sorted(p.name for p in tmp_path.glob("gilviz-run-*.gilviz"))
    assert len(made) == 2, made


# ----------------------------------------------------------------- 6. a bad pid, before any screen
def test_attach_to_a_bad_pid_says_so_before_the_screen_opens(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert_user_error(gilviz("attach", str(gone.pid)), f"no process {gone.pid}")
    other = subprocess.Popen(["sleep", "30"])
    try:
        assert_user_error(gilviz("attach", str(other.pid)), "not CPython")
        assert_user_error(gilviz("run", "--pid", str(other.pid)), "not CPython")
    finally:
        other.kill()
        other.wait()


# ----------------------------------------------------------------- 7. slow ticks
def test_duration_and_exit_are_noticed_between_slow_ticks(tmp_path):
    for args in (["--rate", "0.01", "--duration", "1", "-c", SLEEPY], ["--rate", "0.01", "-c", "pass"]):
        out = tmp_path / "slow.gilviz"
        started = time.monotonic()
        result = gilviz("record", "--force", "-o", str(out), *args, timeout=30)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 8, args
        assert load(str(out)).end.reason in ("duration", "exited")


# ----------------------------------------------------------------- 8. smaller things
def _members(data: bytes) -> list[bytes]:
    """The gzip members of a file, each whole."""
    members = []
    while data:
        unzip = zlib.decompressobj(31)
        unzip.decompress(data)
        members.append(data[: len(data) - len(unzip.unused_data)])
        data = unzip.unused_data
    return members


class _Trickle(io.RawIOBase):
    """A file given a few hundred bytes at a time, as a pipe gives it."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), 300, len(self.data))
        buffer[:n], self.data = self.data[:n], self.data[n:]
        return n

    read1 = io.RawIOBase.read


def test_one_corrupt_byte_loses_its_half_second_and_what_follows_never_a_wrong_tick(tmp_path, monkeypatch):
    out = tmp_path / "r.gilviz"
    assert gilviz("record", "-o", str(out), "--duration", "3", "cpu-threads", "--threads", "8").returncode == 0
    whole = load(str(out))
    data = out.read_bytes()
    members = _members(data)
    assert len(members) >= 5  # the header's, then one every half second, each with its own checksum
    assert zlib.decompress(members[0], 31).count(b"\n") == 1
    ticks_in = [zlib.decompress(m, 31).count(b'{"k":"tick"') for m in members]
    starts = [sum(map(len, members[:i])) for i in range(len(members) + 1)]
    damaged = tmp_path / "d.gilviz"
    # Most flips are noticed by zlib only at a checksum, after the rest decoded to other bytes,
    # often valid text (a digit for a digit): the member's checksum must stop them all.
    for at in range(starts[1] + 10, len(data), (len(data) - starts[1]) // 40):
        member = next(i for i in range(len(members)) if at < starts[i + 1])
        if at - starts[member] < 10:
            continue  # a member's header: its time and system bytes are checked by nothing
        flipped = bytearray(data)
        flipped[at] ^= 0xFF
        damaged.write_bytes(bytes(flipped))
        kept = sum(ticks_in[:member])
        for rec in (load(str(damaged)), load(_Trickle(bytes(flipped)))):
            if not rec.damage.tail and rec.end is not None:  # a flip that changes nothing decoded (a
                assert rec.ticks == whole.ticks and rec.end == whole.end, at  # code length no symbol uses)
                continue
            # damaged, or the last member made endless (it reads as one a kill cut short)
            assert rec.ticks == whole.ticks[:kept], (at, member, len(rec.ticks), kept)
            assert rec.damage.tail or member == len(members) - 1, at
    report = gilviz("report", str(damaged))
    assert report.returncode == 0 and ("damaged" in report.stdout or "truncated" in report.stdout)
    # cut short inside a member (a kill after the last flush): the members before it are read
    for member in (2, len(members) - 1):
        damaged.write_bytes(data[: starts[member] + len(members[member]) // 2])
        rec = load(str(damaged))
        assert rec.truncated and not rec.damage.tail and rec.ticks == whole.ticks[: sum(ticks_in[:member])]
    # a member past what is held until its checksum is read is given in order, unchecked
    monkeypatch.setattr(recording, "HELD_MAX", 1000)
    assert load(str(out)).ticks == whole.ticks and load(_Trickle(data)).ticks == whole.ticks


def test_a_flip_where_a_member_ends_is_damage_not_a_recording_cut_short():
    """A flip in the last bytes of a member (its end-of-block code, its checksum) can make it read on
    through the members after it to the end of the file, as the last member of a recording killed
    after its last flush does: it must still be told as damage, with the ticks of the members
    before it and none after."""
    # A recording of 400 ticks written anew in members of 100 ticks: the same bytes every run. (Flips
    # that make a member read on to the end of the file, the case at stake, hang on the bits the
    # member ends with: from 7 to 38 of them with the first masks in most live recordings, none in
    # some; 32 here, and 40 with the other bits, flipped too where the first find none.)
    out = io.BytesIO()
    writer = recording.RecordingWriter(out, flush_every_s=1e9)
    ticks = 0
    for rec in recording.read(str(Path(__file__).parent / "data" / "lines.gilviz")):
        writer.write(rec)
        if isinstance(rec, Tick):
            ticks += 1
            if ticks % 100 == 0:
                writer.flush()
    writer.flush()
    data = out.getvalue()
    whole = load(_Trickle(data))
    members = _members(data)
    assert len(members) >= 4 and len(whole.ticks) == ticks
    ticks_in = [zlib.decompress(m, 31).count(b'{"k":"tick"') for m in members]
    read_to_the_end = 0
    for masks in ((0xFF, 0x01, 0x80), (0x02, 0x04, 0x08, 0x10, 0x20, 0x40)):
        for member, mask in itertools.product(range(1, len(members) - 1), masks):
            end = sum(map(len, members[: member + 1]))
            kept = sum(ticks_in[:member])
            for at in range(end - 64, end):
                flipped = bytearray(data)
                flipped[at] ^= mask
                rec = load(_Trickle(bytes(flipped)))
                if rec.ticks == whole.ticks and not rec.damage.tail:
                    continue  # (a flip that changes nothing decoded)
                assert rec.ticks == whole.ticks[:kept] and rec.damage.tail, (member, at, mask)
                unzip = zlib.decompressobj(31)
                try:
                    unzip.decompress(bytes(flipped[end - len(members[member]):]))
                    read_to_the_end += not unzip.eof
                except zlib.error:
                    pass
        if read_to_the_end:
            break
    assert read_to_the_end > 0


def test_a_missing_py_spy_is_said_once(tmp_path, monkeypatch):
    from conftest import record_code
    from gilviz.capture import stacks

    monkeypatch.setattr(stacks, "find_pyspy", lambda: None)  # as on a machine without py-spy
    summary, rec = record_code(tmp_path, sys.executable, "import time; time.sleep(0.3)")
    assert len(summary["notices"]) == 1 and "py-spy was not found" in summary["notices"][0]
    out = tmp_path / "run.gilviz"
    assert "pip install py-spy" in gilviz("report", str(out)).stdout


@pytest.mark.parametrize("code, status, said", [
    ("raise SystemExit(3)", 3, "exit status 3"),
    ("import os; os.abort()", 128 + signal.SIGABRT, "killed by SIGABRT"),
])
def test_how_the_target_ended_is_said_and_can_be_passed_through(tmp_path, code, status, said):
    out = tmp_path / "r.gilviz"
    result = gilviz("record", "-o", str(out), "-c", code)
    assert result.returncode == 0 and said in result.stderr, result.stderr
    result = gilviz("record", "--exit-code", "--force", "-o", str(out), "-c", code)
    assert result.returncode == status and said in result.stderr, result.stderr


def test_an_old_python_is_named_as_such(tmp_path):
    from gilviz.target import interpreter_candidates

    old = next((path for v in ("2.7", "3.8", "3.7", "3.6") for path in interpreter_candidates(v)), None)
    if old is None:
        pytest.skip("no Python older than 3.9 here")
    result = gilviz("record", "--python", old, "-o", str(tmp_path / "r"), "-c", "pass")
    assert_user_error(result, "which gilviz does not support", "3.9")


@pytest.mark.parametrize("version, then, by", [("3.12", "py-spy reads its lines", "py-spy"),
                                               ("3.15", "CPython's own reader reads its lines", "_remote_debugging")])
def test_a_frame_reader_that_fails_leaves_the_lines_to_another_and_the_recording_goes_on(tmp_path, monkeypatch,
                                                                                         version, then, by):
    """An error no reading of a live process's memory was written to expect (its memory read as it
    changes) ends that process's reader, not the recording: py-spy reads the lines from then on,
    or from 3.14, CPython's own reader."""
    from conftest import python_or_skip, record_code
    from gilviz.capture.lines import FrameLines
    from gilviz.recording import read
    from gilviz.stream import Notice

    updates = 0
    update = FrameLines.update

    def fails_once_started(self, *args):
        nonlocal updates
        updates += 1
        if updates == 40:
            raise TypeError("a misread no check foresaw")  # (what the reader, or what it calls, may raise)
        return update(self, *args)

    monkeypatch.setattr(FrameLines, "update", fails_once_started)
    code = "import time\nend = time.time() + 2\nwhile time.time() < end: pass\nprint('done', flush=True)\n"
    summary, rec = record_code(tmp_path, python_or_skip(version), code)
    assert updates >= 40, updates
    [said] = [r for r in read(str(tmp_path / "run.gilviz"))
              if isinstance(r, Notice) and "stopped reading its frames" in r.text]
    assert "TypeError: a misread no check foresaw" in said.text and then in said.text, said
    assert rec.end is not None and rec.end.reason == "exited", rec.end
    assert "done" in "".join(o.data for o in rec.output if o.stream == "out")  # (recorded to its end)
    # gilviz's own stacks end with its reader; the lines are read on by the other (py-spy dumps from the
    # start too: it names the threads)
    assert all(s.t <= said.t for s in rec.stacks if s.by == "gilviz")
    assert any(s.by == by and s.t > said.t and any(e.line for e in s.threads) for s in rec.stacks), \
        f"{by} read no line after"


@pytest.mark.parametrize("version, where", [("3.12", "a tick"), ("3.15", "a refresh")])
def test_a_gil_probe_that_fails_stops_reading_that_gil_and_the_recording_goes_on(tmp_path, monkeypatch, version,
                                                                                  where):
    """An error the GIL probe's checks did not foresee, raised as a tick resolves the GIL's holders
    or as the GILs are looked at again: that process's GIL is read no more (never guessed at), its
    threads are read on, and the stream says so once, and why."""
    from conftest import python_or_skip, record_code
    from gilviz.probes import gil as gil_module
    from gilviz.recording import read
    from gilviz.report import format_text
    from gilviz.stream import Notice

    calls = 0
    cls, name, at = ((gil_module.HolderMap, "resolve", 20) if where == "a tick" else
                     (gil_module.GilProbe, "refresh", 3))
    original = getattr(cls, name)

    made = {}  # (an error raised by the probe's code: a function of its module's)
    exec("def misread():\n    raise TypeError('a misread no check foresaw')\n", vars(gil_module), made)

    def fails_once_started(self, *args, **kwargs):
        nonlocal calls
        # (the tick's: a resolve of the holders before its threads are read, the hardest place
        # for the tick to go on from, where it has not yet seen the process alive)
        calls += where != "a tick" or kwargs.get("learn") is False
        if calls == at:
            made["misread"]()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, fails_once_started)
    code = ("import threading, time\nend = time.time() + 2.5\n"
            "def spin():\n    while time.time() < end: pass\n"
            "ts = [threading.Thread(target=spin) for _ in range(2)]\n[t.start() for t in ts]\n[t.join() for t in ts]\n"
            "print('done', flush=True)\n")
    summary, rec = record_code(tmp_path, python_or_skip(version), code)
    assert calls >= at, calls
    [said] = [r for r in read(str(tmp_path / "run.gilviz"))
              if isinstance(r, Notice) and "stopped reading its GIL" in r.text]
    assert "TypeError: a misread no check foresaw" in said.text, said
    assert rec.end is not None and rec.end.reason == "exited", rec.end
    assert "done" in "".join(o.data for o in rec.output if o.stream == "out")  # (recorded to its end)
    root = rec.header.pid
    read = [tick.t for tick in rec.ticks if any(g.pid == root and g.samples for g in tick.gils)]
    assert read and min(read) < said.t, (read[:3], said.t)  # (read before)
    assert max(read) <= said.t + 10_000, (max(read), said.t)  # (and not after: at most the tick it failed in)
    after = [tick for tick in rec.ticks if tick.t > said.t + 100_000]
    assert after and after[-1].t - said.t > 500_000, (said.t, rec.ticks[-1].t)  # the threads read on, to the end
    # its threads read on (each spinner's readings go on, and they go on running: how much each runs on
    # a loaded machine is the scheduler's say)
    spinners = {th.tid for tick in rec.ticks for th in tick.threads if th.tid != root}
    assert len(spinners) == 2, spinners
    read_after = {th.tid for tick in after for th in tick.threads}
    assert spinners <= read_after, (spinners, read_after)
    assert sum(th.oncpu for tick in after for th in tick.threads if th.tid in spinners) > 100_000
    last = rec.processes[root]
    assert last.gil == "not located" and "TypeError: a misread no check foresaw" in (last.gil_why or ""), last
    assert "while it was not read (gilviz stopped reading it after an error of its own" in format_text(summary)
    # the live view and the trace draw the spinners' time on a CPU from then on apart from running
    # (Python or C, unknown which), and as running before, where the GIL split it
    from gilviz.export.perfetto import UNSPLIT_NAME, write_trace
    from gilviz.recording import read as read_recording
    from gilviz.timeline.store import History

    model = History()
    for r in read_recording(str(tmp_path / "run.gilviz")):
        model.add(r)
    start, end = model.unsplit[root][-1]
    assert start <= said.t + 10_000 and end >= model.t_last - 20_000, (model.unsplit[root], said.t, model.t_last)  # (to its end)
    for tid in spinners:
        st = model.thread_stats(model.threads[tid], said.t + 10_000, model.t_last)
        assert st.unsplit and st.running > 0, st
    out = io.StringIO()
    write_trace(out, [(read_recording(str(tmp_path / "run.gilviz")), "")])
    slices = [ev for ev in json.loads(out.getvalue())["traceEvents"] if ev["ph"] == "X" and ev["tid"] in spinners]
    after_failure = [ev for ev in slices if ev["ts"] >= said.t + 10_000]
    assert sum(ev["dur"] for ev in after_failure if ev["name"] == UNSPLIT_NAME) > 100_000
    assert not [ev for ev in after_failure if ev["name"] == "running"]
    assert any(ev["name"] == "running" for ev in slices if ev["ts"] + ev["dur"] < said.t), "no running before"


def test_a_gil_probe_that_fails_as_it_is_made_leaves_that_gil_unread_from_the_start(tmp_path, monkeypatch):
    """The same error at the probe's first look for its GIL (3.15: through the debug offsets): the
    process is read without its GIL from the start, and says why."""
    from conftest import python_or_skip, record_code
    from gilviz.probes import gil as gil_module

    made: dict = {}
    exec("def misread(*args):\n    raise TypeError('a misread no check foresaw')\n", vars(gil_module), made)
    monkeypatch.setattr(gil_module.GilProbe, "_locate_by_offsets", made["misread"])
    code = "import time\nend = time.time() + 1\nwhile time.time() < end: pass\nprint('done', flush=True)\n"
    summary, rec = record_code(tmp_path, python_or_skip("3.15"), code)
    assert [n for n in rec.notices if "stopped reading its GIL (TypeError: a misread" in n], rec.notices
    assert not any(g.samples for tick in rec.ticks for g in tick.gils)
    last = rec.processes[rec.header.pid]
    assert last.gil == "not located" and "a misread no check foresaw" in (last.gil_why or ""), last
    assert "done" in "".join(o.data for o in rec.output if o.stream == "out")
    assert sum(th.oncpu for tick in rec.ticks for th in tick.threads) > 300_000  # (its thread read on)


def test_an_error_raised_outside_the_gil_probe_still_ends_the_recording(tmp_path, monkeypatch):
    """The GIL probe's guard takes what the probe raised, not what any code of a tick did: an error
    of the state rules' is not the GIL's, and reading on without the GIL would hide it."""
    from conftest import python_or_skip, record_code
    from gilviz.sampler import Sampler

    calls = 0
    original = Sampler._process_tick

    def fails_once_started(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 40:
            raise TypeError("a fault of the state rules")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Sampler, "_process_tick", fails_once_started)
    code = "import time\nend = time.time() + 2\nwhile time.time() < end: pass\n"
    with pytest.raises(TypeError, match="a fault of the state rules"):
        record_code(tmp_path, python_or_skip("3.12"), code)


@pytest.mark.parametrize("version", ["3.9", "3.12", "3.15"])
def test_a_recording_goes_on_while_what_it_reads_of_the_memory_changes_as_it_reads(tmp_path, monkeypatch, version):
    """Every read of the target's memory made in Python (the GIL found and followed, the holders,
    the frames) comes back with bytes changed in a third of the reads: what the probes foresaw,
    they take; what they did not, their guards take; the recording runs to the workload's end."""
    import random

    from conftest import python_or_skip, record_code
    from gilviz.probes import gil as gil_module

    rng = random.Random(4)

    class Changing(gil_module.ProcessMemory):
        def read(self, address: int, size: int) -> bytes:
            data = super().read(address, size)
            if rng.random() < 0.3:
                changed = bytearray(data)
                for _ in range(max(1, size // 20)):
                    changed[rng.randrange(size)] = rng.randrange(256)
                data = bytes(changed)
            return data

    monkeypatch.setattr(gil_module, "ProcessMemory", Changing)  # (the frame reader reads through the GIL's)
    code = ("import threading, time\nend = time.time() + 2\n"
            "def spin():\n    while time.time() < end: pass\n"
            "def nap():\n    while time.time() < end: time.sleep(0.01)\n"
            "ts = [threading.Thread(target=f) for f in (spin, spin, nap)]\n[t.start() for t in ts]\n"
            "[t.join() for t in ts]\nprint('done', flush=True)\n")
    summary, rec = record_code(tmp_path, python_or_skip(version), code)
    assert rec.end is not None and rec.end.reason == "exited", rec.end
    assert "done" in "".join(o.data for o in rec.output if o.stream == "out")  # (recorded to its end)
    # its threads read on to the end: time on a CPU in its last quarter second (which of them ran in it,
    # and how much, is the scheduler's say on a loaded machine)
    assert sum(th.oncpu for tick in rec.ticks[-50:] for th in tick.threads) > 0
