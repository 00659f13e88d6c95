"""The screen of a replay, drawn off screen by the app itself: as SVG at one moment, or as an
asciicast (v2) of the whole replay, frame by frame.

The app runs headless on staged sources (sources.StagedSource): before each frame the
recording is handed over up to that moment and no further, the app takes it and paints, and
the frame is read from Textual's compositor, the same lines a terminal would be sent. The
frames are the app's; only the clock is the exporter's, so the same recording gives the same
file every time.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

from rich.color import ColorSystem
from rich.segment import Segment

from ..export import new_file
from ..recording import comparison
from ..sources import StagedSource
from .app import GilvizApp, make_app

SETTLE_TIMEOUT_S = 30.0


def staged_app(path: str, theme: str | None, speed: float = 1.0) -> tuple[GilvizApp, list[StagedSource]]:
    """The app on a recording (both runs of a comparison), handed over only as far as told."""
    compare = comparison(path)
    sources = [StagedSource(path, speed, run=0)]
    options: dict[str, Any] = dict(theme_name=theme, show_ui_cost=False, toasts=False, output_every_s=0.0)
    if compare is not None:
        sources.append(StagedSource(path, speed, run=1))
        options.update(compare=sources[1], names=(compare.runs + ["A", "B"])[:2], together=compare.together)
    return make_app(sources[0], **options), sources


async def show_at(pilot: Any, app: GilvizApp, sources: list[StagedSource], until_us: int) -> None:
    """Hands the recording over up to `until_us` and waits until the app has painted it."""
    for source in sources:
        source.advance(until_us)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not all(s.settled for s in sources):
        if time.monotonic() > deadline:
            raise RuntimeError("the recording was not handed over in time")
        await asyncio.sleep(0.001)
    for timeline in app.timelines:
        timeline.take()
    await pilot.pause()
    app.refresh_now()
    await pilot.pause()


def screen_lines(app: GilvizApp) -> list[str]:
    """The screen as a terminal would be sent it: one string of text and SGR codes per line."""
    out = []
    for strip in app.screen._compositor.render_strips():
        parts = []
        for seg in Segment.simplify(strip):
            if seg.control:
                continue
            parts.append(seg.style.render(seg.text, color_system=ColorSystem.TRUECOLOR) if seg.style else seg.text)
        out.append("".join(parts))
    return out


def _run(app: GilvizApp, size: tuple[int, int], drive: Callable[[Any], Any]) -> None:
    failure: list[BaseException] = []

    async def pilot_script(pilot: Any) -> None:
        try:
            await drive(pilot)
        except BaseException as e:  # said after the app has closed
            failure.append(e)
        finally:
            app.exit()

    app.run(headless=True, size=size, auto_pilot=pilot_script)
    if failure:
        raise failure[0]


def export_svg(path: str, out: str, at_s: float, size: tuple[int, int], theme: str | None, force: bool = False) -> str:
    """The app's screenshot at `at_s` seconds into the replay."""
    app, sources = staged_app(path, theme)
    result: dict[str, str] = {}

    async def drive(pilot: Any) -> None:
        await show_at(pilot, app, sources, round(at_s * 1e6))
        result["svg"] = app.export_screenshot()

    _run(app, size, drive)
    with new_file(out, force) as f:
        f.write(result["svg"])
    return result["svg"]


def export_asciicast(path: str, out: str, size: tuple[int, int], theme: str | None, speed: float = 1.0,
                     fps: float = 10.0, force: bool = False) -> int:
    """The replay at `speed`, a frame every 1/fps seconds of the cast, each line sent when it changed."""
    app, sources = staged_app(path, theme, speed)
    from ..recording import last_time

    end_us = max(last_time(path, run) for run in range(len(sources)))
    step_us = 1e6 * speed / fps
    frames = 0
    with new_file(out, force) as f:
        f.write(json.dumps({"version": 2, "width": size[0], "height": size[1], "timestamp": int(time.time()),
                            "title": f"gilviz replay {path}", "env": {"TERM": "xterm-256color"}}) + "\n")

        async def drive(pilot: Any) -> None:
            nonlocal frames
            shown: list[str] = []
            k = 0
            while True:
                until = round(k * step_us)
                await show_at(pilot, app, sources, min(until, end_us))
                lines = screen_lines(app)
                if not shown:
                    data = "\x1b[?25l\x1b[2J" + "".join(f"\x1b[{y + 1};1H{line}" for y, line in enumerate(lines))
                else:
                    data = "".join(f"\x1b[{y + 1};1H{line}" for y, line in enumerate(lines)
                                   if y >= len(shown) or line != shown[y])
                if data:
                    f.write(json.dumps([round(k / fps, 3), "o", data]) + "\n")
                shown = lines
                frames += 1
                if until >= end_us:
                    break
                k += 1
            f.write(json.dumps([round(k / fps + 1 / fps, 3), "o", "\x1b[0m\x1b[?25h"]) + "\n")

        _run(app, size, drive)
    return frames
