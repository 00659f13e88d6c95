"""Totals of a recording: every figure is a sum of tick durations or GIL samples.

`Report` is a collector (collect.py): it reads the stream once and keeps only running sums,
so its memory does not grow with the length of the recording.
"""

from __future__ import annotations

import json
import signal
from collections import defaultdict, deque
from typing import Any, Iterable

from .collect import Recording, replay
from .lines import LineSums
from .stream import (BLOCK_REASONS, End, Header, Line, Notice, Process, Progress, Record, Stack, Stats, Thread,
                     ThreadTick, Tick, Unsplit)

_THREAD_SUMS = ThreadTick._fields[2:12]  # every duration after tid and cpu
_GIL_SUMS = ("samples", "held", "contended", "switches")
_AGREEMENT_TICKS = (2, 3)  # py-spy's read spans a few milliseconds: ticks before and after its time


def _frac(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


class Report:
    """A collector of per-thread, per-GIL and per-core totals."""

    def __init__(self) -> None:
        self.header = Header()
        self.end: End | None = None
        self.duration_us = 0
        self.ticks = 0
        self.per_thread: dict[int, list[int]] = {}  # tid -> [life, *the sums of _THREAD_SUMS]
        self.core_target: dict[int, int] = defaultdict(int)
        # busy: per reading of /proc/stat, at least what the target's threads were on the core by
        # their own clocks (stat counts in clock ticks), as the live view's core lanes draw it
        self.core_busy: dict[int, int] = defaultdict(int)
        self._core_target_unread: dict[int, int] = defaultdict(int)  # since the last reading
        self.gil_totals: dict[tuple[int, int], list[int]] = {}  # (pid, interp) -> [life, *_GIL_SUMS]
        self.threads: dict[int, Thread] = {}
        self.processes: dict[int, Process] = {}
        self.last_line: dict[int, str] = {}
        self.first_progress: Progress | None = None
        self.last_progress: Progress | None = None
        self.result: dict[str, Any] | None = None
        self.notices: list[str] = []
        self.damaged_records = 0
        self.damaged_tail = False
        # py-spy's GIL owner against the GIL probe's holders at the same moment (py-spy's stacks
        # only: where gilviz reads the stacks, their GIL owner comes from the probe itself)
        self._recent: deque[tuple[int, int, frozenset[int]]] = deque(maxlen=64)  # (t, dt, tids that held)
        self._pending: list[tuple[int, int]] = []  # (stack time, its owner tid)
        self._agree = self._asked = 0
        self.lines = LineSums()
        self.stacks_by: str | None = None
        # Time on a CPU counted as running in the ticks no reading of a process's GIL came in: not
        # split into Python and native code (before it is located: on a busy machine, threads that
        # hold the GIL a moment at a time can take a third of a second to confirm it; a tick it
        # could not be read in, as the process ends; after gilviz stopped reading it)
        self.unsplit_by_thread: dict[int, int] = defaultdict(int)  # tid -> us
        self._unsplit_now = Unsplit()
        self._unsplit_pending: list[tuple[int, int, frozenset[int]]] = []  # (tid, us, pids) of threads not yet named

    def add(self, rec: Record) -> None:
        if isinstance(rec, Tick):
            self._tick(rec)
            self.lines.add_tick(rec.dt, rec.threads)
        elif isinstance(rec, Line):
            self.lines.add_line(rec)
        elif isinstance(rec, Stats):
            self.stacks_by = rec.stacks_by or self.stacks_by
        elif isinstance(rec, Thread):
            known = self.threads.get(rec.tid)
            if known is None or known.pid != rec.pid or rec.name:
                self.threads[rec.tid] = rec
            if self._unsplit_pending:
                self._place_unsplit()
        elif isinstance(rec, Process):
            self.processes[rec.pid] = rec
            self._unsplit_now.process(rec)
        elif isinstance(rec, Stack):
            for th in rec.threads:
                self.last_line[th.tid] = th.line
            owners = [th.tid for th in rec.threads if th.owns_gil] if rec.by == "py-spy" else []
            if owners:
                self._pending.append((rec.t, owners[0]))
                self._settle(final=False)
        elif isinstance(rec, Progress):
            if rec.done is not None:
                self.first_progress = self.first_progress or rec
                self.last_progress = rec
            if rec.result:
                self.result = rec.result
        elif isinstance(rec, Notice):
            self.notices.append(rec.text)
        elif isinstance(rec, End):
            self.end = rec
        elif isinstance(rec, Header):
            self.header = rec

    def _tick(self, tick: Tick) -> None:
        dt = tick.dt
        self.ticks += 1
        self.duration_us += dt
        per_thread, core_target, unread = self.per_thread, self.core_target, self._core_target_unread
        held_by = []
        for th in tick.threads:
            acc = per_thread.get(th.tid)
            if acc is None:
                acc = per_thread[th.tid] = [0] * (1 + len(_THREAD_SUMS))
            acc[0] += dt
            for i, value in enumerate(th[2:12], start=1):
                acc[i] += value
            if th.cpu >= 0:
                core_target[th.cpu] += th.oncpu
                unread[th.cpu] += th.oncpu
            if th.held > 0:
                held_by.append(th.tid)
        for g in tick.gils:
            tot = self.gil_totals.get((g.pid, g.interp))
            if tot is None:
                tot = self.gil_totals[g.pid, g.interp] = [0] * 5
            tot[0] += dt
            tot[1] += g.samples
            tot[2] += g.held
            tot[3] += g.contended
            tot[4] += g.switches
        if tick.core_busy:
            for cpu, busy in enumerate(tick.core_busy):
                self.core_busy[cpu] += max(busy, unread.get(cpu, 0))
            unread.clear()
        if self._unsplit_now.with_gil:
            self._count_unsplit(tick)
        self._recent.append((tick.t, dt, frozenset(held_by)))
        if self._pending:
            self._settle(final=False)

    def _count_unsplit(self, tick: Tick) -> None:
        unread = self._unsplit_now.in_tick(tick.gils)  # (found in this tick: its samples split it)
        if not unread:
            return
        pids = frozenset(unread)
        for th in tick.threads:
            if th.running:
                info = self.threads.get(th.tid)
                if info is None or info.pid is None:  # (a thread's record follows the tick it is first in)
                    if len(self._unsplit_pending) < 100_000:
                        self._unsplit_pending.append((th.tid, th.running, pids))
                elif info.pid in pids:
                    self.unsplit_by_thread[th.tid] += th.running

    def _place_unsplit(self) -> None:
        keep = []
        for tid, us, pids in self._unsplit_pending:
            info = self.threads.get(tid)
            if info is None or info.pid is None:
                keep.append((tid, us, pids))
            elif info.pid in pids:
                self.unsplit_by_thread[tid] += us
        self._unsplit_pending = keep

    @property
    def unsplit(self) -> dict[int, int]:
        """Per process, the us of its threads' running that no reading of its GIL split."""
        out: dict[int, int] = defaultdict(int)
        for tid, us in self.unsplit_by_thread.items():
            out[self.threads[tid].pid] += us  # (counted once its thread's record named its process)
        return out

    def _settle(self, final: bool) -> None:
        """Scores the stack dumps whose neighbouring ticks have all arrived."""
        if not self._recent:
            if final:
                self._pending.clear()
            return
        before, after = _AGREEMENT_TICKS
        last_t, last_dt, _ = self._recent[-1]
        keep = []
        for t, owner in self._pending:
            if not final and last_t < t + after * last_dt:
                keep.append((t, owner))
                continue
            near = [held for tt, dt, held in self._recent if t - before * dt <= tt <= t + after * dt]
            self._asked += 1
            self._agree += any(owner in held for held in near)
        self._pending = keep

    def finish(self) -> None:
        self._settle(final=True)

    def summary(self) -> dict[str, Any]:
        header = self.header
        end = self.end
        duration_s = self.duration_us / 1e6
        root = header.pid
        root_proc = self.processes.get(root) if root is not None else None

        threads = []
        for tid, acc in self.per_thread.items():
            sums = dict(zip(_THREAD_SUMS, acc[1:]))
            life = acc[0]
            info = self.threads.get(tid)
            blocked = sum(sums[r] for r in BLOCK_REASONS)
            threads.append({
                "tid": tid,
                "name": info.name if info is not None and info.name else str(tid),
                "pid": info.pid if info is not None else None,
                "running": _frac(sums["running"], life),
                # (of running, what no reading of the GIL split: Python or C, unknown which)
                "running_unsplit": _frac(self.unsplit_by_thread.get(tid, 0), life),
                "native": _frac(sums["native"], life),
                "waiting": _frac(sums["waiting"], life),
                "runnable": _frac(sums["runnable"], life),
                "blocked": _frac(blocked, life),
                "blocked_by": {r: _frac(sums[r], life) for r in BLOCK_REASONS},
                "gil_held": _frac(sums["held"], life),
                "cpu_s": round(sums["oncpu"] / 1e6, 4),
                "lifetime_s": round(life / 1e6, 4),
                "line": self.last_line.get(tid, ""),
            })
        threads.sort(key=lambda t: (t["pid"] or 0, t["tid"]))
        names = {t["tid"]: t["name"] for t in threads}

        gils = []
        unsplit = self.unsplit
        for pid, proc in self.processes.items():
            for interp in sorted({0, *(i for p, i in self.gil_totals if p == pid)}):
                tot = self.gil_totals.get((pid, interp))
                if interp and not tot:
                    continue
                entry: dict[str, Any] = {
                    "pid": pid, "interp": interp,
                    "label": f"pid {pid}" + (f" interpreter {interp}" if interp else ""),
                    "status": proc.gil, "found_by": proc.gil_found_by,
                    "switch_interval_us": proc.switch_interval_us if not interp else None,
                }
                if proc.gil_why:
                    entry["why"] = proc.gil_why
                if not interp and unsplit.get(pid):
                    entry["unsplit_cpu_s"] = round(unsplit[pid] / 1e6, 4)
                if tot and tot[1]:
                    life, samples, held, contended, switches = tot
                    entry.update(
                        held=_frac(held, samples),
                        contended=_frac(contended, samples),
                        handoffs_per_s=round(switches / (life / 1e6), 1) if life else 0.0,
                        sample_hz=round(samples / (life / 1e6), 1) if life else 0.0,
                    )
                gils.append(entry)
        root_gil = next((g for g in gils if g["pid"] == root and g["interp"] == 0), None)
        gil = None
        if root_gil and "held" in root_gil:
            gil = {k: root_gil[k] for k in ("held", "contended", "handoffs_per_s")}
        has_gil = (root_proc.gil != "no GIL") if root_proc is not None else header.gil_enabled  # None: unknown

        ncpu = max(header.cpus or 0, len(self.core_busy), max(self.core_target, default=-1) + 1)
        cores = [
            {"cpu": cpu, "busy": min(1.0, _frac(self.core_busy.get(cpu, 0) + self._core_target_unread.get(cpu, 0),
                                                self.duration_us)),
             "by_target": min(1.0, _frac(self.core_target.get(cpu, 0), self.duration_us))}
            for cpu in range(ncpu)
        ]

        sampler_cpu = end.sampler_cpu_s if end is not None else None
        sampler_wall = (end.sampler_wall_s if end is not None else None) or duration_s
        summary: dict[str, Any] = {
            "target": {
                "command": header.command,
                "scenario": header.scenario,
                "pid": root,
                "python": header.python_version or (root_proc.python if root_proc is not None else None),
                "gil": None if has_gil is None else bool(has_gil),
            },
            "duration_s": round(duration_s, 3),
            "tick_hz": round(self.ticks / duration_s, 1) if duration_s else 0.0,
            "gil_sample_hz": (root_gil or {}).get("sample_hz", 0.0),
            "gil": gil,
            "gil_status": root_proc.gil if root_proc is not None else None,
            "gil_found_by": root_proc.gil_found_by if root_proc is not None else None,
            "gils": gils,
            "threads": threads,
            "cores": cores,
            "sampler": {
                "cpu_s": sampler_cpu,
                "overhead": round(sampler_cpu / sampler_wall, 4) if sampler_cpu is not None and sampler_wall else None,
                "holder_agreement": round(self._agree / self._asked, 3) if self._asked else None,
                "stacks_error": end.stacks_error if end is not None else None,
            },
            "end": {"reason": end.reason if end is not None else "truncated",
                    "exit_code": end.exit_code if end is not None else None},
            "truncated": end is None,
            "notices": self.notices,
            "lines": [f.to_json(names) for f in self.lines.figures()],
            "stacks": {"by": self.stacks_by, "readings_per_s": round(self.lines.readings_per_s(), 1)},
            "damaged_records": self.damaged_records,
            "damaged_tail": self.damaged_tail,
        }
        last, first = self.last_progress, self.first_progress
        if last is not None and duration_s:
            # work per second from the first report to the last (the live view's figure), or over the
            # whole run when there was one report
            span = (last.t - first.t) / 1e6 if first is not None else 0.0
            per_s = (last.done - first.done) / span if span > 0 and first is not None else last.done / duration_s
            summary["throughput"] = {"per_s": round(per_s, 2), "unit": last.unit or "units", "done": last.done}
            if self.result:
                summary["result"] = self.result
        return summary


def summarize_records(records: Iterable[Record]) -> dict[str, Any]:
    return replay(records, Report()).summary()


def summarize_file(path: str, run: int = 0) -> dict[str, Any]:
    """The report of a recording on disk (of one run of a comparison), read as a stream."""
    from .collect import replay_file
    from .recording import Damage

    damage = Damage()
    report = replay_file(path, Report(), damage, run=run)
    report.damaged_records, report.damaged_tail = damage.records, damage.tail
    return report.summary()


def summarize_runs(path: str) -> list[dict[str, Any] | None]:
    """The report of each run of a comparison on disk; None for a run the recording was cut short
    before (a kill, Ctrl-C), so the run it holds is still reported."""
    from .recording import RunNotBegun

    runs: list[dict[str, Any] | None] = []
    for run in (0, 1):
        try:
            runs.append(summarize_file(path, run))
        except RunNotBegun:
            runs.append(None)
    return runs


def throughput_ratio(runs: list[dict[str, Any] | None], names: list[str]) -> dict[str, Any]:
    """How many times one run did the other's work per second (when both count the same work)."""
    rates = [((r or {}).get("throughput") or {}).get("per_s") for r in runs]
    units = [((r or {}).get("throughput") or {}).get("unit") for r in runs]
    out: dict[str, Any] = {"per_s": rates, "units": units, "ratio": None, "faster": None}
    if all(rates) and units[0] == units[1]:
        fast = 0 if rates[0] >= rates[1] else 1
        out["ratio"] = round(rates[fast] / rates[1 - fast], 3)
        out["faster"] = names[fast]
    return out


def compare_text(runs: list[dict[str, Any] | None], names: list[str], together: bool) -> str:
    figures = throughput_ratio(runs, names)
    parts = []
    for letter, name, run in zip("AB", names, runs):
        body = format_text(run) if run is not None else "not begun the recording was cut short before this run began"
        parts += [f"== {letter}: {name}", body, ""]
    how = "run together, sharing the cores" if together else "run one after the other"
    how += "".join(f"; run {letter} was cut short" for letter, run in zip("AB", runs) if run and run["truncated"])
    not_begun = [letter for letter, run in zip("AB", runs) if run is None]
    if not_begun:
        which = f"run {not_begun[0]} was cut short before it" if len(not_begun) == 1 else "both runs were cut short before they"
        parts.append(f"compare   no ratio: {which} began ({how})")
    elif figures["ratio"] is not None:
        slow = names[1] if figures["faster"] == names[0] else names[0]
        parts.append(f"compare   {figures['faster']}: {figures['ratio']:.2f}x the {figures['units'][0]} per second "
                     f"of {slow} ({how})")
    else:
        parts.append(f"compare   no ratio: the runs count different work or none ({how})")
    return "\n".join(parts)


def summarize(rec: Recording) -> dict[str, Any]:
    """The report of a recording held in memory."""
    # (a process's records in their place among the ticks: its GIL's status changes over the run)
    timed: list[Record] = [*rec.ticks, *rec.proc_history, *rec.stacks, *rec.stats]
    timed.sort(key=lambda r: r.t)
    records: list[Record] = [rec.header, *rec.threads.values(), *rec.lines, *timed, *rec.progress,
                             *(Notice(0, text) for text in rec.notices)]
    if rec.end is not None:
        records.append(rec.end)
    report = replay(records, Report())
    report.damaged_records, report.damaged_tail = rec.damage.records, rec.damage.tail
    return report.summary()


def describe_exit(code: int | None) -> str:
    """How a process ended, from its Popen return code."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit status {code}"


def format_text(summary: dict[str, Any]) -> str:
    t = summary["target"]
    lines = [
        f"target    {t['command']}  (pid {t['pid']}, Python {t['python'] or '?'}, "
        f"{'GIL' if t['gil'] else 'GIL unknown' if t['gil'] is None else 'no GIL'})",
        f"duration  {summary['duration_s']:.2f} s   ticks {summary['tick_hz']:.0f}/s   GIL samples {summary['gil_sample_hz']:.0f}/s",
    ]
    gil = summary["gil"]
    found_by = f"   (found by {summary['gil_found_by']})" if summary.get("gil_found_by") else ""
    if gil:
        lines.append(f"GIL       held {gil['held']:.0%}   contended {gil['contended']:.0%}   "
                     f"hand-offs {gil['handoffs_per_s']:.0f}/s{found_by}")
    else:
        root = next((g for g in summary["gils"] if g["pid"] == t["pid"] and g["interp"] == 0), {})
        status = summary.get("gil_status") or "unknown"
        if status == "not located":
            status = "not located: GIL waits come from futexes inside _PyRuntime, held and hand-offs are unknown" + (
                f" ({root['why']})" if root.get("why") else "")
        lines.append(f"GIL       {status}")
    root_gil = next((g for g in summary["gils"] if g["pid"] == t["pid"] and g["interp"] == 0), {})
    if gil and root_gil.get("unsplit_cpu_s", 0.0) >= 0.005:  # (as much as it shows: 0.01 CPU s)
        # (a GIL read, then no more: gilviz stopped reading it, and says why)
        when = ("in ticks with no reading of it (before it was found, as the process ended)"
                if root_gil.get("status") == "located" or not root_gil.get("why")
                else f"while it was not read ({root_gil['why']})")
        lines.append(f"          {when}, {root_gil['unsplit_cpu_s']:.2f} CPU s of its threads count as "
                     "running (no reading of the GIL split them)")
    for g in summary["gils"]:
        if (g["pid"] != t["pid"] or g["interp"]) and "held" in g:
            lines.append(f"          {g['label']}: held {g['held']:.0%}   contended {g['contended']:.0%}   "
                         f"hand-offs {g['handoffs_per_s']:.0f}/s")
    if "throughput" in summary:
        tp = summary["throughput"]
        lines.append(f"work      {tp['done']} {tp['unit']} ({tp['per_s']:.1f}/s)")
    if "result" in summary:
        lines.append("result    " + ", ".join(f"{k} {v}" for k, v in summary["result"].items()))
    s = summary["sampler"]
    if s["overhead"] is not None:
        lines.append(f"sampler   {s['cpu_s']:.2f} CPU s ({s['overhead']:.1%} of a core)")
    end = summary["end"]
    lines.append(f"ended     {end['reason']}" + (f", {describe_exit(end['exit_code'])}" if end["reason"] == "exited" else "")
                 + ("  (recording truncated)" if summary["truncated"] else "")
                 + ("  (the rest was damaged and is lost)" if summary["damaged_tail"] else "")
                 + (f"  ({summary['damaged_records']} damaged records skipped)" if summary["damaged_records"] else ""))
    lines.extend(f"note      {text}" for text in summary["notices"])
    lines.append("")
    lines.append(f"{'tid':>7} {'name':<18} {'running':>7} {'native':>7} {'waiting':>7} {'runnable':>8} {'blocked':>7} {'by':<6} {'GIL':>5} {'cpu s':>7}")
    for th in summary["threads"]:
        by = max(th["blocked_by"].items(), key=lambda kv: kv[1])[0] if th["blocked"] > 0.005 else ""
        # (at most that much Python: where no reading of the GIL split some of it, part may be C)
        running = ("≤" if th.get("running_unsplit", 0.0) >= 0.0005 else "") + f"{th['running']:.1%}"
        lines.append(
            f"{th['tid']:>7} {th['name'][:18]:<18} {running:>7} {th['native']:>7.1%} {th['waiting']:>7.1%} "
            f"{th['runnable']:>8.1%} {th['blocked']:>7.1%} {by:<6} {th['gil_held']:>5.0%} {th['cpu_s']:>7.2f}"
        )
    lines.append("")
    lines.append("cores     " + "   ".join(f"cpu{c['cpu']} {c['busy']:.0%} ({c['by_target']:.0%} target)" for c in summary["cores"]))
    lines.extend(lines_text(summary))
    return "\n".join(lines)


TOP_LINES = 8


def lines_text(summary: dict[str, Any], top: int = TOP_LINES) -> list[str]:
    """The lines that held the GIL longest, and those that waited for it longest."""
    rows = summary.get("lines") or []
    stacks = summary.get("stacks") or {}
    if not rows:
        why = ("recorded with --stacks-rate 0, without py-spy, or by a gilviz before lines" if stacks.get("by") is None
               else "no thread was in Python code when read")
        return ["", f"lines     none: no stack readings ({why})"]
    out = ["", f"lines     from {stacks.get('readings_per_s', 0):.0f} stack readings a second per thread"
                f"{' by ' + stacks['by'] if stacks.get('by') else ''}; time per line is estimated from them"]
    for key, title in (("held_s", "held the GIL"), ("waited_s", "waited for the GIL")):
        best = sorted((r for r in rows if r[key] >= 0.005), key=lambda r: -r[key])[:top]
        if not best:
            continue
        out.append(f"  {title + ', s':<22} {'held':>7} {'waited':>7} {'native':>7} {'blocked':>7}  {'line':<40} threads")
        for r in best:
            where = f"{r['file'].rpartition('/')[2]}:{r['line']} {r['function']}"
            names = list(dict.fromkeys(r["threads"]))  # the main threads of several processes share a name
            who = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
            out.append(f"  {'':<22} {r['held_s']:>7.2f} {r['waited_s']:>7.2f} {r['native_s']:>7.2f} "
                       f"{r['blocked_s']:>7.2f}  {where[:40]:<40} {who}")
    return out


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)
