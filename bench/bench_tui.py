"""How fast the live view draws: frames per second and the UI process's CPU.

    python3 bench/bench_tui.py [--seconds 8] [--rounds 3] [--threads 8 64] [--size 200x60] [--prints 1]
                               [--full-history] [--recording FILE]

For each thread count, runs the real app in a pseudo-terminal of the given size (so the
whole path is measured: reading and decoding the pipe, model, Line API rows, compositor,
escape sequences written to a terminal), fed through a pipe by a process that plays a
synthetic-but-realistic sampler (200 ticks per second, flushed every 30 ms, as
`gilviz _sample` does; 5 stack dumps a second, py-spy's default): a pool of CPU-bound
threads taking turns on the GIL, sleepers that wake now and then, a native worker, a thread
blocked on a lock. Prints the frames per second the terminal received and the UI process's
CPU time per second of wall time. With --full-history the view starts with its history full,
as after 9 minutes of 64 threads (made in the UI process before the run), so that the merges
of its old ticks, every 5 s or so from then on, are in the measured time.
Goals: 30 fps, at most 20 % of one core at 64 threads.

Each figure is the median (min..max) of --rounds runs. The anchor, measured before each run
in the same process: the CPU a fixed piece of pure-Python work (dict stores of fresh tuples,
the kind of work a frame is made of) takes. This machine's speed moves by a quarter from one
hour to the next (the same view measured 22.5 % and 17 % of a core twenty minutes apart), and
the anchor moves with it: compare runs by both.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import random
import select
import statistics
import struct
import sys
import tempfile
import termios
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_floor import spread  # noqa: E402
from gilviz.sources import LiveSource, Source, decode_all  # noqa: E402
from gilviz.stream import End, Tick  # noqa: E402

TICK_HZ = 200
STACKS_HZ = 5
RSS_EVERY_S = 5.0
FLUSH_S = 0.03  # the sampler flushes its pipe about this often


class SyntheticSource(Source):
    """A CPU-bound pool taking turns on the GIL, sleepers, a native worker, a lock waiter."""

    capabilities = LiveSource.capabilities

    def __init__(self, threads: int, seconds: float, cpus: int = 2, seed: int = 1, t0_us: int = 0):
        """t0_us: the stream time its first tick starts at (after a history made beforehand)."""
        self.threads = threads
        self.seconds = seconds
        self.t0_us = t0_us
        self.cpus = cpus
        self.label = f"synthetic {threads} threads"
        self.rng = random.Random(seed)
        self._stop = threading.Event()

    def records(self, t_end_us: int):
        pid = 4000
        tids = [pid + i for i in range(self.threads)]
        print_every = max(1, round(TICK_HZ / float(os.environ.get("GILVIZ_BENCH_PRINTS", "1"))))
        yield {"k": "header", "format": 1, "command": self.label, "scenario": None, "python_version": "3.12.0",
               "gil_enabled": True, "cpus": self.cpus, "tick_hz": TICK_HZ, "gil_hz": 10000, "pid": pid}
        yield {"k": "proc", "t": 0, "pid": pid, "ppid": 1, "command": "python synthetic.py", "python": "3.12.0",
               "gil": "located", "switch_interval_us": 5000}
        for i, tid in enumerate(tids):
            yield {"k": "thread", "t": 0, "tid": tid, "pid": pid, "name": "MainThread" if i == 0 else f"worker-{i}"}
        spinners = tids[1: 1 + max(2, self.threads // 4)]
        native = tids[1 + len(spinners): 2 + len(spinners)]
        locked = tids[2 + len(spinners): 3 + len(spinners)]
        dt = 1_000_000 // TICK_HZ
        t = self.t0_us
        holder = 0
        while t < t_end_us:
            t += dt
            if (t // 5000) % 1 == 0 and self.rng.random() < 0.9:
                holder = (holder + 1) % len(spinners)
            rows = []
            for i, tid in enumerate(tids):
                cpu = i % self.cpus
                if tid in spinners:
                    if spinners[holder] == tid:
                        rows.append([tid, cpu, dt - 300, 0, 200, 100, 0, 0, 0, 0, dt - 200, dt - 100])
                    else:
                        w = self.rng.randint(dt // 2, dt)
                        rows.append([tid, cpu, 0, 0, w, dt - w, 0, 0, 0, 0, 0, 400])
                elif tid in native:
                    rows.append([tid, cpu, 100, dt - 600, 500, 0, 0, 0, 0, 0, 100, dt - 500])
                elif tid in locked:
                    rows.append([tid, -1, 0, 0, 0, 0, 0, 0, dt, 0, 0, 0])
                else:
                    if self.rng.random() < 0.02:
                        rows.append([tid, cpu, 300, 0, 300, 0, dt - 600, 0, 0, 0, 300, 300])
                    else:
                        rows.append([tid, cpu, 0, 0, 0, 0, dt, 0, 0, 0, 0, 0])
            n = t // dt
            core = [dt * 10 - 1000 if c == 0 else dt * 5 for c in range(self.cpus)] if n % 10 == 0 else []
            yield {"k": "tick", "t": t, "dt": dt, "th": rows, "g": [[pid, 50, 48, 45, 1]], "c": core}
            if n % (TICK_HZ // STACKS_HZ) == 0:  # py-spy's dumps, at gilviz's default rate
                yield {"k": "stack", "t": t, "pid": pid, "threads": [
                    {"tid": tid, "name": "", "line": f"work (synthetic.py:{10 + k % 7})", "owns_gil": False,
                     "active": True, "frames": [f"work (synthetic.py:{10 + k % 7})", "run (threading.py:1010)"]}
                    for k, tid in enumerate(tids)]}
            if n % TICK_HZ == 0:
                yield {"k": "stats", "t": t, "overhead": 0.12, "gil_hz": 10000.0, "gil_hz_target": 10000.0}
            if n % print_every == 0:
                yield {"k": "out", "t": t, "s": "out", "d": f"step {n // print_every}\n"}
        yield {"k": "end", "t": t, "reason": "duration", "exit_code": 0, "ticks": t // dt}

    def run(self, emit) -> None:
        start = time.monotonic()
        batch_until = 0.0
        for rec in decode_all(self.records(self.t0_us + int(self.seconds * 1e6))):
            if self._stop.is_set():
                return
            if isinstance(rec, Tick):
                due = start + (rec.t - self.t0_us) / 1e6
                if due > batch_until:  # the sampler's pipe delivers every FLUSH_S
                    delay = due - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    batch_until = time.monotonic() + FLUSH_S
            emit(rec)

    def stop(self) -> None:
        self._stop.set()


def feed(threads: int, seconds: float, t0_us: int = 0) -> None:
    """Plays the synthetic sampler on stdout, as `gilviz _sample` does (uncompressed records)."""
    from gilviz.recording import RecordingWriter

    writer = RecordingWriter(sys.stdout.buffer, compress=False, flush_every_s=FLUSH_S)
    try:
        SyntheticSource(threads, seconds, t0_us=t0_us).run(writer.write)
        writer.close()
    except BrokenPipeError:
        pass


class PipeSource(LiveSource):
    """The live path exactly (a process writing records to a pipe), with the synthetic sampler."""

    def __init__(self, threads: int, seconds: float, t0_us: int = 0):
        super().__init__([], label=f"synthetic {threads} threads")
        self.threads, self.seconds, self.t0_us = threads, seconds, t0_us

    @property
    def argv(self) -> list[str]:
        return [sys.executable, os.path.abspath(__file__), "--feed", str(self.threads), str(self.seconds),
                str(self.t0_us)]


def full_history_ticks(threads: int) -> int:
    """Ticks of `threads` rows that fill the live view's history (its old ticks merge from there on)."""
    from gilviz.timeline.store import MAX_THREAD_TICKS

    return MAX_THREAD_TICKS // max(1, threads) + 2 * TICK_HZ


def fill_history(model, threads: int) -> int:
    """The history as after a long run, made here before the run (through the pipe it would take
    as long as the run did): the synthetic sampler's first 10 s, their ticks repeated, later each
    time. Returns the stream time reached."""
    cycle_us = 10_000_000
    records = list(decode_all(SyntheticSource(threads, cycle_us / 1e6).records(cycle_us)))
    ticks = [r for r in records if isinstance(r, Tick)]
    for rec in records:
        if not isinstance(rec, (Tick, End)):
            model.add(rec)
    t, left, lap = 0, full_history_ticks(threads), 0
    while left > 0:
        for tick in ticks[:left]:
            t = tick.t + lap * cycle_us
            model.add(Tick(t, tick.dt, tick.threads, tick.gils, tick.core_busy))
        left -= len(ticks)
        lap += 1
    return t


def child(threads: int, seconds: float, width: int, height: int, out_path: str, recording: str | None,
          fps: float, full: bool = False) -> None:
    from textual.app import App

    from gilviz.tui.app import make_app
    from gilviz.sources import ReplaySource

    t0_us = 0
    if full and not recording:  # the view's history is made before the app (and the sampler) start
        from gilviz.timeline.store import History
        from gilviz.tui import timeline as timeline_module

        made = History()
        t0_us = fill_history(made, threads)
        timeline_module.History = lambda *args, **kwargs: made  # (the view adopts it)
    source = ReplaySource(recording, speed=1.0) if recording else PipeSource(threads, seconds + 5, t0_us)
    app = make_app(source, output_pane=True, frame_hz=fps)
    updates = [0]
    original = App._display

    def counting(self, screen, renderable):  # count what reaches the terminal
        if renderable is not None:
            updates[0] += 1
        return original(self, screen, renderable)

    App._display = counting  # type: ignore[method-assign]
    timings: dict[str, float] = {}
    if os.environ.get("GILVIZ_BENCH_TIMINGS"):
        from textual.screen import Screen

        from gilviz.tui import widgets
        from gilviz.tui.timeline import TimelineView

        def timed(cls, name, label):
            original_fn = getattr(cls, name)

            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return original_fn(*args, **kwargs)
                finally:
                    timings[label] = timings.get(label, 0.0) + time.perf_counter() - t

            setattr(cls, name, wrapper)

        original_run = PipeSource.run

        def run_timed(self, emit):
            try:
                return original_run(self, emit)
            finally:
                timings["reading the pipe (thread CPU)"] = time.thread_time()

        PipeSource.run = run_timed  # type: ignore[method-assign]
        import gc

        gc_started = [0.0]

        def gc_timed(phase, info):
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                label = f"garbage collection, generation {info['generation']}"
                timings[label] = timings.get(label, 0.0) + time.perf_counter() - gc_started[0]

        gc.callbacks.append(gc_timed)
        timed(Screen, "_compositor_refresh", "screen refresh (all)")
        timed(App, "_display", "write to terminal")
        timed(TimelineView, "take", "ingest")
        timed(TimelineView, "update_figures", "figures")
        for cls in (widgets.CoreLanes, widgets.GilLanes, widgets.ThreadLanes, widgets.TimeAxis, widgets.ThreadTable,
                    widgets.Legend):
            timed(cls, "render_line", f"render_line {cls.__name__}")
    result = {}

    async def measure() -> None:
        import asyncio

        await asyncio.sleep(2.0)  # warm up: the window fills
        u0, f0 = updates[0], app.frames
        c0, w0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        c1, w1 = time.process_time(), time.monotonic()
        source.stop()
        await asyncio.sleep(0.3)
        result.update(threads=threads, wall_s=w1 - w0, cpu_s=c1 - c0,
                      terminal_updates_per_s=(updates[0] - u0) / (w1 - w0),
                      repaints_per_s=(app.frames - f0) / (w1 - w0),
                      ticks=len(app.model.times), size=f"{width}x{height}",
                      timings={k: round(v / (w1 - w0 + 2.0) * 1000, 1) for k, v in timings.items()})
        app.exit()

    def on_mount() -> None:
        app.run_worker(measure(), exclusive=False)

    app.call_later(on_mount)
    profile = os.environ.get("GILVIZ_BENCH_PROFILE")
    if profile:
        import cProfile

        cProfile.runctx("app.run()", globals(), locals(), f"{profile}.{threads}")
    else:
        app.run()
    with open(out_path, "w") as f:
        json.dump(result, f)


def run_one(threads: int, seconds: float, width: int, height: int, recording: str | None, fps: float,
            full: bool = False) -> dict:
    fd_out, out_path = tempfile.mkstemp(suffix=".json")
    os.close(fd_out)
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.environ["TERM"] = "xterm-256color"
            os.environ["COLORTERM"] = "truecolor"
            child(threads, seconds, width, height, out_path, recording, fps, full)
        finally:
            os._exit(0)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    received = 0
    rss: list[tuple[float, float]] = []  # (seconds since start, MB): the UI process's memory
    started = time.monotonic()
    while True:
        if not rss or time.monotonic() - started - rss[-1][0] >= RSS_EVERY_S:
            try:
                with open(f"/proc/{pid}/status") as status:
                    kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
                rss.append((time.monotonic() - started, kb / 1024))
            except (OSError, StopIteration):
                pass
        try:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                received += len(data)
        except OSError:
            break
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    os.waitpid(pid, 0) if not done else None
    with open(out_path) as f:
        text = f.read()
    os.unlink(out_path)
    result = json.loads(text) if text else {"threads": threads, "error": "no result"}
    result["terminal_bytes"] = received
    result["rss"] = rss
    return result


def reference_ms() -> float:
    """CPU of a fixed piece of pure-Python work, in ms: the anchor (median of 5)."""
    times = []
    for _ in range(5):
        t = time.process_time()
        d: dict = {}
        for i in range(300_000):
            d[i & 1023] = (i, str(i))
        times.append((time.process_time() - t) * 1000)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (after 2 s warm-up)")
    p.add_argument("--threads", type=int, nargs="+", default=[8, 64])
    p.add_argument("--rounds", type=int, default=3, help="runs per thread count (default 3)")
    p.add_argument("--size", default="200x60")
    p.add_argument("--recording", help="replay this recording at speed 1 instead of synthetic ticks")
    p.add_argument("--fps", type=float, default=30.0, help="the app's frame rate (default 30)")
    p.add_argument("--prints", type=float, default=1.0,
                   help="lines a second the synthetic workload prints to its output (default 1)")
    p.add_argument("--full-history", action="store_true",
                   help="start with the view's history full, as after a long run (made before each run: "
                        "about 6 s at 64 threads), so that its merges of old ticks are in the measured time")
    p.add_argument("--feed", nargs=3, metavar=("THREADS", "SECONDS", "T0_US"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.feed:
        feed(int(args.feed[0]), float(args.feed[1]), int(args.feed[2]))
        return 0
    width, height = (int(x) for x in args.size.split("x"))
    os.environ["GILVIZ_BENCH_PRINTS"] = str(args.prints)  # (for the feeding process, which is another)
    print(f"gilviz live view at {width}x{height}, {TICK_HZ} ticks/s, {args.seconds:.0f} s measured per run, "
          f"{args.prints:g} lines of output a second"
          + (", the history full from the start (its old ticks merging)" if args.full_history else ""))
    print(f"{'threads':>7} {'fps':>18} {'repaints/s':>18} {'UI CPU':>20}   {'anchor: reference work':>24}")
    print(f"{'':>7} {'(goal 30)':>18} {'':>18} {'(goal <= 20 % at 64)':>20}   {'(ms of CPU)':>24}")
    ok = True
    for threads in ([0] if args.recording else args.threads):
        runs, refs = [], []
        for _ in range(args.rounds):
            refs.append(reference_ms())
            r = run_one(threads, args.seconds, width, height, args.recording, args.fps, args.full_history)
            if "error" in r:
                print(f"{threads:>7} failed: {r['error']}")
                ok = False
                continue
            runs.append(r)
        if not runs:
            continue
        label = "replay" if args.recording else str(threads)
        fps = [r["terminal_updates_per_s"] for r in runs]
        repaints = [r["repaints_per_s"] for r in runs]
        cpu = [100 * r["cpu_s"] / r["wall_s"] for r in runs]
        print(f"{label:>7} {spread(fps, '.1f'):>18} {spread(repaints, '.1f'):>18} {spread(cpu, '.1f') + ' %':>20}   "
              f"{spread(refs, '.1f'):>24}")
        r = runs[-1]
        rss = r.get("rss") or []
        if len(rss) >= 3:
            half = [mb for t, mb in rss if t >= rss[-1][0] / 2]
            per_min = (rss[-1][1] - half[0]) / max(1e-9, (rss[-1][0] - rss[-len(half)][0]) / 60)
            print(f"{'':>9}memory (last run): {rss[0][1]:.0f} MB at start, {max(mb for _, mb in rss):.0f} MB at most, "
                  f"{rss[-1][1]:.0f} MB at the end; {per_min:+.1f} MB a minute over the second half "
                  f"(goal: under 250 MB after an hour)")
        for k, v in sorted(r.get("timings", {}).items(), key=lambda kv: -kv[1]):
            print(f"{'':>9}{k:<32} {v:>6.1f} ms per second (last run)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
