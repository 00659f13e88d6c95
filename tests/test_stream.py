"""The one schema of the record stream: every kind round-trips, rows are read by field name,
and a recording written by the first format (tests/data/threads.gilviz) still reads."""

import gzip
import json
from pathlib import Path

import pytest

from gilviz.collect import Recording, load, replay, replay_file
from gilviz.recording import RecordingWriter, read
from gilviz.report import Report, format_text, summarize
from gilviz.stream import (BLOCK_REASONS, STATE_KEYS, Decoder, End, GilTick, Header, Notice, Output, Process,
                           ProcessEnd, Progress, Stack, StackEntry, State, Stats, Thread, ThreadTick, Tick,
                           decode_header, header_fields)

FIXTURE = Path(__file__).parent / "data" / "threads.gilviz"


def test_states_are_spelled_once():
    assert STATE_KEYS == ("running", "native", "waiting", "runnable", "sleep", "io", "lock", "other")
    assert BLOCK_REASONS == ("sleep", "io", "lock", "other")
    # ThreadTick's state fields are State's, in State's order
    assert ThreadTick._fields[2:10] == STATE_KEYS
    th = ThreadTick(1, 0, 10, 20, 30, 40, 50, 60, 70, 80, 5, 6)
    assert [th.time_in(s) for s in State] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert th.blocked == 50 + 60 + 70 + 80


EVERY_KIND = [
    Header(fields=header_fields(), command="demo.py", cpus=2, pid=7, python_version="3.13.0", monotonic_ns=123),
    Process(t=1, pid=7, ppid=1, command="python demo.py", python="3.13.0", gil="located", switch_interval_us=5000,
            gil_found_by="debug offsets", interpreters=[1]),
    Thread(2, 8, 7, "worker"),
    Tick(5000, 5000, [ThreadTick(8, 1, 4000, 0, 1000, 0, 0, 0, 0, 0, 4000, 4500)],
         [GilTick(7, 10, 9, 5, 1, 0, 8), GilTick(7, 10, 10, 0, 0, 1, 9)], [4000, 3000]),
    Stack(6, 7, [StackEntry(8, "worker", "spin (demo.py:3)", True, True, ["spin (demo.py:3)", "run (t.py:1)"])]),
    Output(7, "err", "oops\n"),
    Progress(8, 120, "loops", True, {"lost": 3}),
    Stats(9, 0.12, 2000.0, 2000.0),
    Notice(10, "py-spy was not found"),
    ProcessEnd(11, 9),
    End(12, "exited", -11, 2, 20, 0.01, 0.02, None),
]


def test_every_kind_round_trips_through_a_file(tmp_path):
    path = tmp_path / "all.gilviz"
    writer = RecordingWriter(str(path))
    for record in EVERY_KIND:
        writer.write(record)
    writer.close()
    assert list(read(str(path))) == EVERY_KIND


def _rewrite(path, header_changes, row_change):
    """The fixture's records with its header and every tick's thread rows changed."""
    with gzip.open(path, "rt") as f:
        records = [json.loads(line) for line in f]
    records[0].update(header_changes)
    for rec in records:
        if rec["k"] == "tick":
            rec["th"] = [row_change(row) for row in rec["th"]]
    return records


def test_rows_are_read_by_the_field_names_the_header_gives(tmp_path):
    """A later gilviz may add a field, or order them otherwise: readers map by name."""
    with gzip.open(FIXTURE, "rt") as f:
        ours = json.loads(f.readline()).get("fields", {}).get("threads") or list(ThreadTick._fields[:12])
    theirs = ["new_field", *reversed(ours)]
    records = _rewrite(FIXTURE, {"format": 2, "fields": {"threads": theirs, "gils": list(GilTick._fields[:5])}},
                       lambda row: [99, *reversed(row)])
    path = tmp_path / "later.gilviz"
    with gzip.open(path, "wt") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    assert load(str(path)).ticks == load(FIXTURE).ticks


def test_the_first_format_still_reads():
    header = next(read(FIXTURE))
    assert header.format == 1 and header.fields["gils"] == list(GilTick._fields[:5])
    rec = load(FIXTURE)
    assert rec.end is not None and len(rec.ticks) > 100
    gils = [g for tick in rec.ticks for g in tick.gils]
    assert gils and all(g.interp == 0 and g.holder == 0 for g in gils)  # fields it did not have
    summary = summarize(rec)
    assert {t["name"] for t in summary["threads"]} >= {"spin-1", "spin-2", "sleeper", "blocked", "hasher"}
    assert summary["gil"]["held"] > 0.9


def test_the_report_streams_and_agrees_with_the_whole_recording():
    whole = summarize(load(FIXTURE))
    streamed = replay_file(FIXTURE, Report()).summary()
    assert streamed == whole


def test_a_decoder_without_a_header_reads_the_first_format():
    tick = Decoder().decode({"k": "tick", "t": 5, "dt": 5, "th": [[1] * 12], "g": [[7, 1, 1, 0, 0]], "c": []})
    assert tick.gils == [GilTick(7, 1, 1, 0, 0, 0, 0)]
    assert Decoder().decode({"k": "from-the-future", "t": 0}) is None
    with pytest.raises(KeyError):
        Decoder().decode({"k": "thread", "pid": 1})  # no tid
    assert decode_header({"k": "header", "format": 1}).fields["threads"] == list(ThreadTick._fields)


def test_collectors_are_fed_the_same_records_live_or_replayed():
    class Count:
        def __init__(self):
            self.kinds, self.finished = {}, False

        def add(self, record):
            self.kinds[type(record).__name__] = self.kinds.get(type(record).__name__, 0) + 1

        def finish(self):
            self.finished = True

    counted = replay(read(FIXTURE), Count())
    assert counted.finished and counted.kinds["Header"] == 1 and counted.kinds["End"] == 1
    kept = replay(read(FIXTURE), Recording())
    assert counted.kinds["Tick"] == len(kept.ticks)


def test_what_the_fast_json_will_not_take_still_crosses(tmp_path):
    """The stream's JSON goes through orjson, with json behind it: a NaN an earlier gilviz wrote
    still reads, and an integer past 64 bits (a workload's result) is still written."""
    from gilviz.recording import decode_line, encode_line

    assert decode_line(encode_line({"k": "progress", "t": 1, "result": {"big": 2**70, "ratio": 0.5}})) == {
        "k": "progress", "t": 1, "result": {"big": 2**70, "ratio": 0.5}}
    nan = decode_line(b'{"k":"stats","t":5,"overhead":NaN}')
    assert nan["t"] == 5 and nan["overhead"] != nan["overhead"]
    tick = Tick(10, 5, [ThreadTick(7, 0, 5, 0, 0, 0, 0, 0, 0, 0, 5, 5, 3)], [GilTick(1, 4, 4, 0, 1)], [])
    assert decode_line(encode_line(tick.to_wire()))["th"] == [[7, 0, 5, 0, 0, 0, 0, 0, 0, 0, 5, 5, 3]]
    with pytest.raises(ValueError):
        decode_line(b'{"k": "tick", "t": ')


def test_without_orjson_the_standard_json_writes_and_reads_the_same(tmp_path, monkeypatch):
    """Where orjson has no wheel (3.15, free-threaded builds), the stream is the standard library's."""
    import gilviz.recording as recording

    path = tmp_path / "plain.gilviz"
    monkeypatch.setattr(recording, "orjson", None)
    writer = RecordingWriter(str(path))
    for record in EVERY_KIND:
        writer.write(record)
    writer.close()
    assert list(read(str(path))) == EVERY_KIND
    monkeypatch.undo()
    assert list(read(str(path))) == EVERY_KIND  # and orjson reads what json wrote


def test_holders_agree_only_where_py_spy_read_the_owner():
    """py-spy reads the GIL's owner itself: held against the GIL probe's holders, an independent
    check. Where gilviz reads the stacks, their owner is the probe's own figure: no check."""
    from gilviz.report import summarize_records
    from gilviz.stream import Header, Stack, StackEntry, ThreadTick, Tick

    def summary(by: str, owner: int) -> dict:
        ticks = [Tick(t, 5000, [ThreadTick(7, 0, 5000, 0, 0, 0, 0, 0, 0, 0, 5000, 5000),
                                ThreadTick(8, 1, 0, 0, 5000, 0, 0, 0, 0, 0, 0, 0)], [], [])
                 for t in range(5000, 60_000, 5000)]
        stack = Stack(30_000, 1, [StackEntry(owner, owns_gil=True, frames=["f (x.py:1)"])], by)
        return summarize_records([Header(pid=1), *ticks[:5], stack, *ticks[5:]])["sampler"]

    assert summary("py-spy", 7)["holder_agreement"] == 1.0
    assert summary("py-spy", 8)["holder_agreement"] == 0.0
    assert summary("gilviz", 7)["holder_agreement"] is None
    assert Stack.from_wire({"k": "stack", "pid": 1, "threads": []}).by == "py-spy"  # recordings before `by`
    assert Stack.from_wire(Stack(1, 2, [], "gilviz").to_wire()).by == "gilviz"


def test_the_report_says_how_much_time_on_a_cpu_no_reading_of_the_gil_split():
    """Until its GIL is located, a Python process's time on a CPU counts as running: the report says
    how much, from its threads' rows in the ticks its GIL was not read in, whichever record named
    a thread first (a new thread's record follows the tick it is first in)."""
    def row(tid, running=0, native=0):
        return ThreadTick(tid, 0, running, native, 0, 0, 5000 - running - native, 0, 0, 0, 0, running + native)

    records = [Header(pid=10, python_version="3.12.1"), Process(pid=10, python="3.12.1", gil="not located"),
               Process(pid=20, python="3.12.1", gil="not located"),
               Thread(tid=10, pid=10, name="MainThread"), Thread(tid=20, pid=20, name="MainThread")]
    t = 0
    for i in range(4):  # 10 unread; 20 read (found within this tick: the samples are kept)
        t += 5000
        records.append(Tick(t=t, dt=5000, threads=[row(10, running=1000), row(11, running=300), row(20, running=2000)],
                            gils=[GilTick(20, 10, 2, 0, 0)], core_busy=[]))
        if i == 0:
            records.append(Thread(tid=11, pid=10, name="worker"))  # (after the tick it is first in)
    records.append(Process(pid=10, python="3.12.1", gil="located", gil_found_by="shape"))
    for _ in range(3):  # split now: running is Python with the GIL, not counted
        t += 5000
        records.append(Tick(t=t, dt=5000, threads=[row(10, running=700, native=300), row(11, native=300)],
                            gils=[GilTick(10, 10, 7, 0, 0)], core_busy=[]))
    t += 5000  # a tick the located GIL could not be read in (the process ending): not split, counted
    records.append(Tick(t=t, dt=5000, threads=[row(10, running=900)], gils=[GilTick(10, 0, 0, 0, 0)], core_busy=[]))
    records.append(End(t=t, reason="exited", exit_code=0))
    summary = replay(records, Report()).summary()
    unsplit = {g["pid"]: g.get("unsplit_cpu_s") for g in summary["gils"]}
    assert unsplit == {10: (4 * 1300 + 900) / 1e6, 20: None}, summary["gils"]
    by_thread = {t["tid"]: t["running_unsplit"] for t in summary["threads"]}
    assert by_thread == {10: round(4900 / 40_000, 4), 11: round(1200 / 35_000, 4), 20: 0.0}, by_thread
    rows = {line.split()[0]: line for line in format_text(summary).splitlines() if line.split()[:1] in (["10"], ["20"])}
    assert "≤" in rows["10"] and "≤" not in rows["20"], rows  # (running: at most that much Python)
    assert "in ticks with no reading of it (before it was found, as the process ended), 0.01 CPU s of its threads " \
           "count as running" in format_text(summary)


def test_a_cores_busy_time_is_at_least_what_the_targets_threads_were_on_it():
    """/proc/stat counts a core's busy time in clock ticks, the threads' own clocks count theirs to
    the nanosecond: where stat says less than the target's threads were on the core, the report
    says the threads' time (as the live view's core lanes draw it), per reading and after the last."""
    def row(tid, cpu, oncpu):
        return ThreadTick(tid, cpu, oncpu, 0, 0, 0, 5000 - oncpu, 0, 0, 0, 0, oncpu)

    records = [Header(pid=10, python_version="3.12.1", cpus=2), Thread(tid=10, pid=10, name="MainThread"),
               Thread(tid=11, pid=10, name="worker")]
    t = 0
    for busy in ([], [], [], [2000, 9000]):  # one reading for four ticks: cpu0 undercounted, cpu1 not
        t += 5000
        records.append(Tick(t=t, dt=5000, threads=[row(10, 0, 1000), row(11, 1, 500)], gils=[], core_busy=busy))
    t += 5000  # a tick after the last reading: its threads' time still counts
    records.append(Tick(t=t, dt=5000, threads=[row(10, 0, 5000), row(11, 1, 0)], gils=[], core_busy=[]))
    records.append(End(t=t, reason="exited", exit_code=0))
    cores = replay(records, Report()).summary()["cores"]
    assert [(c["busy"], c["by_target"]) for c in cores] == [(9000 / 25_000, 9000 / 25_000), (9000 / 25_000, 2000 / 25_000)]
    assert all(c["busy"] >= c["by_target"] for c in cores)
