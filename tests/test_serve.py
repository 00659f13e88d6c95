"""gilviz serve in a real headless browser (Debian's chromium, driven by Playwright): the page
loads, the lanes draw, a key press reaches the app, and the screenshot key downloads an SVG."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as this machine's browser tests start it: no sandbox (root), no GPU, no calls home
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
DARK_RUNNING = (0x4A, 0xDE, 0x80)  # gv-running in the dark theme
DARK_BACKGROUND = (0x0B, 0x10, 0x20)


def _needs():
    pytest.importorskip("textual_serve", reason="textual-serve is not installed: pip install '.[test]'")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install '.[test]'")
    if not os.path.exists(CHROMIUM):
        pytest.skip("no chromium to drive: apt-get install chromium (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pixels(png: bytes):
    """The screenshot's pixels as (r, g, b) tuples (PNG decoded with the standard library)."""
    import struct
    import zlib

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, width = 8, [], 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            chunks.append(data)
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows, prev = [], bytearray(stride)
    i = 0
    for _ in range(height):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = prev[x], prev[x - channels] if x >= channels else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return [tuple(row[x:x + 3]) for row in rows[::4] for x in range(0, stride, channels * 4)]


def near(p, q, tol=24):
    return all(abs(a - b) <= tol for a, b in zip(p, q))


def wait_for(page, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shot = pixels(page.screenshot())
        if what(shot):
            return shot
        time.sleep(0.3)
    raise AssertionError(f"the page never showed it within {timeout:.0f} s")


@pytest.fixture
def served(tmp_path):
    _needs()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gilviz", "serve", "--port", str(port),
                               str(DATA / "compare.gilviz")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=tmp_path)
    try:
        ready, _, _ = select.select([server.stderr], [], [], 30)
        assert ready, "gilviz serve said nothing in 30 s"
        line = server.stderr.readline().decode()
        assert line.startswith("gilviz: serving the replay of") and f"http://localhost:{port}" in line, line
        assert "Only this machine can open it" in line
        yield f"http://localhost:{port}/"
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_the_app_in_a_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            page.goto(served)
            # the lanes draw: the running state's colour on the dark theme's background
            shot = wait_for(page, lambda px: sum(near(q, DARK_RUNNING) for q in px) > 200)
            assert sum(near(q, DARK_BACKGROUND) for q in shot) > len(shot) // 4
            # a key reaches the app: t turns the theme light (once the page has the focus, as a user's click gives it)
            page.mouse.click(10, 10)
            page.keyboard.press("t")
            wait_for(page, lambda px: sum(sum(q) > 600 for q in px) > len(px) // 2, timeout=15)
            # a screenshot in a browser is a download (textual-serve opens a tab on a one-time address
            # that answers with an attachment), not a file on the server; F8, as ctrl+s is the browser's own.
            # The address the tab asks for is taken here and fetched as a browser would: headless
            # Chromium cancels a download whose tab closes first, and that tab closes at once
            asked: list[str] = []

            def take(route) -> None:
                asked.append(route.request.url)
                route.abort()

            page.context.route("**/download/**", take)
            page.keyboard.press("F8")
            deadline = time.monotonic() + 15
            while not asked and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            assert asked, "no download asked for within 15 s"
            with urllib.request.urlopen(asked[0], timeout=20) as answer:
                disposition = answer.headers.get("Content-Disposition", "")
                body = answer.read().decode()
            assert disposition.startswith("attachment;"), disposition
            name = disposition.partition("filename=")[2].strip('"')
            assert name.startswith("gilviz-") and name.endswith(".svg"), name
            assert body.startswith("<svg") and "REPLAYED" in body
            assert not list(tmp_path.glob("gilviz-*.svg"))  # nothing left on the server's side
        finally:
            browser.close()


def test_serve_refuses_bad_input_with_one_line():
    pytest.importorskip("textual_serve", reason="textual-serve is not installed: pip install '.[test]'")

    def serve(*args):
        return subprocess.run([sys.executable, "-m", "gilviz", "serve", *args], capture_output=True, text=True,
                              timeout=30)

    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        for args, words in ((["--port", "0", "cpu-threads"], "--port must be"),
                            (["--port", str(busy), "cpu-threads"], "give another --port"),
                            (["nope.gilviz"], "no recording at"),
                            (["--pid", "1"], "not --pid"),
                            (["no-such-scenario"], "no-such-scenario")):
            result = serve(*args)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and words in lines[0], (args, result.stderr)
