"""Totals of a recording: every figure is a sum of tick durations or GIL samples."""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from typing import Any

from .model import BLOCK_REASONS, ThreadTick
from .recording import Recording


_THREAD_SUMS = ThreadTick._fields[2:]  # every duration after tid and cpu
_GIL_SUMS = ("samples", "held", "contended", "switches")


def _frac(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def summarize(rec: Recording) -> dict[str, Any]:
    ticks = rec.ticks
    header = rec.header
    end = rec.end or {}
    duration_us = sum(t.dt for t in ticks)
    duration_s = duration_us / 1e6
    root = header.get("pid")
    root_proc = rec.processes.get(root, {})

    per_thread: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    core_target: dict[int, int] = defaultdict(int)
    core_busy: dict[int, int] = defaultdict(int)
    gil_totals: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for tick in ticks:
        for th in tick.threads:
            acc = per_thread[th.tid]
            acc["life"] += tick.dt
            for name, value in zip(_THREAD_SUMS, th[2:]):
                acc[name] += value
            if th.cpu >= 0:
                core_target[th.cpu] += th.oncpu
        for g in tick.gils:
            tot = gil_totals[g.pid, g.interp]
            tot["life"] += tick.dt
            for name, value in zip(_GIL_SUMS, g[1:5]):
                tot[name] += value
        for cpu, busy in enumerate(tick.core_busy):
            core_busy[cpu] += busy

    last_line = {}
    for stack in rec.stacks:
        for th in stack["threads"]:
            last_line[th["tid"]] = th.get("line", "")

    threads = []
    for tid, acc in per_thread.items():
        life = acc["life"]
        info = rec.threads.get(tid, {})
        blocked = sum(acc[r] for r in BLOCK_REASONS)
        threads.append({
            "tid": tid,
            "name": info.get("name", str(tid)),
            "pid": info.get("pid"),
            "running": _frac(acc["running"], life),
            "native": _frac(acc["native"], life),
            "waiting": _frac(acc["waiting"], life),
            "runnable": _frac(acc["runnable"], life),
            "blocked": _frac(blocked, life),
            "blocked_by": {r: _frac(acc[r], life) for r in BLOCK_REASONS},
            "gil_held": _frac(acc["held"], life),
            "cpu_s": round(acc["oncpu"] / 1e6, 4),
            "lifetime_s": round(life / 1e6, 4),
            "line": last_line.get(tid, ""),
        })
    threads.sort(key=lambda t: (t["pid"] or 0, t["tid"]))

    gils = []
    for pid, proc in rec.processes.items():
        interps = sorted({0, *(i for p, i in gil_totals if p == pid)})
        for interp in interps:
            tot = gil_totals.get((pid, interp))
            if interp and not tot:
                continue
            entry: dict[str, Any] = {
                "pid": pid, "interp": interp,
                "label": f"pid {pid}" + (f" interpreter {interp}" if interp else ""),
                "status": proc.get("gil"), "found_by": proc.get("gil_found_by"),
                "switch_interval_us": proc.get("switch_interval_us") if not interp else None,
            }
            if proc.get("gil_why"):
                entry["why"] = proc["gil_why"]
            if tot and tot["samples"]:
                entry.update(
                    held=_frac(tot["held"], tot["samples"]),
                    contended=_frac(tot["contended"], tot["samples"]),
                    handoffs_per_s=round(tot["switches"] / (tot["life"] / 1e6), 1) if tot["life"] else 0.0,
                    sample_hz=round(tot["samples"] / (tot["life"] / 1e6), 1) if tot["life"] else 0.0,
                )
            gils.append(entry)
    root_gil = next((g for g in gils if g["pid"] == root and g["interp"] == 0), None)
    gil = None
    if root_gil and "held" in root_gil:
        gil = {k: root_gil[k] for k in ("held", "contended", "handoffs_per_s")}
    has_gil = root_proc.get("gil") != "no GIL" if root_proc else header.get("gil_enabled")  # None: unknown

    ncpu = max(header.get("cpus") or 0, len(core_busy), max(core_target, default=-1) + 1)
    cores = [
        {"cpu": cpu, "busy": min(1.0, _frac(core_busy.get(cpu, 0), duration_us)),
         "by_target": min(1.0, _frac(core_target.get(cpu, 0), duration_us))}
        for cpu in range(ncpu)
    ]

    sampler_cpu = end.get("sampler_cpu_s")
    sampler_wall = end.get("sampler_wall_s") or duration_s
    summary: dict[str, Any] = {
        "target": {
            "command": header.get("command"),
            "scenario": header.get("scenario"),
            "pid": root,
            "python": header.get("python_version") or root_proc.get("python"),
            "gil": None if has_gil is None else bool(has_gil),
        },
        "duration_s": round(duration_s, 3),
        "tick_hz": round(len(ticks) / duration_s, 1) if duration_s else 0.0,
        "gil_sample_hz": (root_gil or {}).get("sample_hz", 0.0),
        "gil": gil,
        "gil_status": root_proc.get("gil"),
        "gil_found_by": root_proc.get("gil_found_by"),
        "gils": gils,
        "threads": threads,
        "cores": cores,
        "sampler": {
            "cpu_s": sampler_cpu,
            "overhead": round(sampler_cpu / sampler_wall, 4) if sampler_cpu is not None and sampler_wall else None,
            "holder_agreement": holder_agreement(rec),
            "stacks_error": end.get("stacks_error"),
        },
        "end": {"reason": end.get("reason", "truncated"), "exit_code": end.get("exit_code")},
        "truncated": rec.truncated,
        "notices": rec.notices,
        "damaged_records": rec.damage.records,
        "damaged_tail": rec.damage.tail,
    }
    progress = [p for p in rec.progress if "done" in p]
    if progress and duration_s:
        last = progress[-1]
        summary["throughput"] = {"per_s": round(last["done"] / duration_s, 2), "unit": last.get("unit", "units"),
                                 "done": last["done"]}
        results = [p["result"] for p in progress if "result" in p]
        if results:
            summary["result"] = results[-1]
    return summary


def holder_agreement(rec: Recording) -> float | None:
    """How often py-spy's GIL owner also held the GIL in the GIL probe's samples of that moment."""
    if not rec.stacks or not rec.ticks:
        return None
    times = [t.t for t in rec.ticks]
    agree = total = 0
    for stack in rec.stacks:
        owners = [th["tid"] for th in stack["threads"] if th.get("owns_gil")]
        if not owners:
            continue
        i = bisect.bisect_left(times, stack["t"])
        near = rec.ticks[max(0, i - 2): i + 3]  # py-spy's read spans a few milliseconds
        held = {th.tid for tick in near for th in tick.threads if th.held > 0}
        total += 1
        agree += owners[0] in held
    return round(agree / total, 3) if total else None


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
    lines.append(f"ended     {end['reason']}" + (f", exit status {end['exit_code']}" if end["reason"] == "exited" else "")
                 + ("  (recording truncated)" if summary["truncated"] else "")
                 + ("  (the rest was damaged and is lost)" if summary["damaged_tail"] else "")
                 + (f"  ({summary['damaged_records']} damaged records skipped)" if summary["damaged_records"] else ""))
    lines.extend(f"note      {text}" for text in summary["notices"])
    lines.append("")
    lines.append(f"{'tid':>7} {'name':<18} {'running':>7} {'native':>7} {'waiting':>7} {'runnable':>8} {'blocked':>7} {'by':<6} {'GIL':>5} {'cpu s':>7}")
    for th in summary["threads"]:
        by = max(th["blocked_by"].items(), key=lambda kv: kv[1])[0] if th["blocked"] > 0.005 else ""
        lines.append(
            f"{th['tid']:>7} {th['name'][:18]:<18} {th['running']:>7.1%} {th['native']:>7.1%} {th['waiting']:>7.1%} "
            f"{th['runnable']:>8.1%} {th['blocked']:>7.1%} {by:<6} {th['gil_held']:>5.0%} {th['cpu_s']:>7.2f}"
        )
    lines.append("")
    lines.append("cores     " + "   ".join(f"cpu{c['cpu']} {c['busy']:.0%} ({c['by_target']:.0%} target)" for c in summary["cores"]))
    return "\n".join(lines)


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)
