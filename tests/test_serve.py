"""gilviz serve in a real headless browser (Debian's chromium, driven by Playwright): the page
loads, the lanes draw, a key press reaches the app, and the screenshot key downloads an SVG. And
with a page open (a websocket, as the browser's), serve killed or stopped leaves none of the
page's processes behind."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
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
                            (["--host", "192.0.2.1", "cpu-threads"], "--host 192.0.2.1 is not an address of this"),
                            (["nope.gilviz"], "no recording at"),
                            (["--pid", "1"], "not --pid"),
                            (["no-such-scenario"], "no-such-scenario")):
            result = serve(*args)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and words in lines[0], (args, result.stderr)


class Page(threading.Thread):
    """A browser page as textual-serve sees one: a websocket on /ws, read until it closes."""

    def __init__(self, port: int):
        super().__init__(daemon=True, name="page")
        self.url = f"http://localhost:{port}/ws?width=100&height=30"
        self.opened = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import asyncio

        import aiohttp

        async def read() -> None:
            async with aiohttp.ClientSession() as session:
                for _ in range(100):  # serve says where it serves just before it listens
                    try:
                        ws = await session.ws_connect(self.url)
                        break
                    except aiohttp.ClientConnectorError:
                        await asyncio.sleep(0.2)
                else:
                    ws = await session.ws_connect(self.url)
                async with ws:
                    self.opened.set()
                    async for _ in ws:
                        pass

        try:
            asyncio.run(read())
        except (OSError, aiohttp.ClientError) as e:
            self.error = e  # never served, or serve went: a dead connection, as a browser's would be


def running(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def page_processes(server) -> list:
    """Everything serve's page started, once the page's workload runs: its gilviz run, the
    sampler, the keeper, the workload and the workload's service (io-threads' child)."""
    import psutil

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = psutil.Process(server.pid).children(recursive=True)
        keepers = [p for p in found if running(p) and any("keeper.py" in a for a in p.cmdline())]
        if keepers and len(keepers[0].children(recursive=True)) >= 2:
            return psutil.Process(server.pid).children(recursive=True)
        time.sleep(0.2)
    raise AssertionError("the page's workload did not start within 60 s")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_nothing_a_page_started_outlives_serve(tmp_path, how):
    """The page's gilviz run ends when serve does, however serve ended (kill -9 leaves no one to
    close the page), and takes its sampler, keeper and workload with it; SIGTERM with a page open
    ends serve at once, not when the page closes."""
    pytest.importorskip("textual_serve", reason="textual-serve is not installed: pip install '.[test]'")
    pytest.importorskip("psutil")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gilviz", "serve", "--port", str(port),
                               "io-threads", "--threads", "2", "--duration", "90"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, cwd=tmp_path)
    procs = []
    try:
        ready, _, _ = select.select([server.stderr], [], [], 30)
        assert ready and server.stderr.readline().startswith(b"gilviz: serving"), "gilviz serve did not start"
        page = Page(port)
        page.start()
        assert page.opened.wait(30), f"the page did not open: {page.error!r}"
        procs = page_processes(server)
        assert len(procs) >= 5, procs
        described = {p.pid: " ".join(p.cmdline()) for p in procs}
        server.send_signal(how)
        if how == signal.SIGTERM:
            try:
                server.wait(20)  # at once, but for the page's app's polite end
            except subprocess.TimeoutExpired:
                pytest.fail("serve still runs 20 s after SIGTERM with a page open")
        deadline = time.monotonic() + 20
        while any(running(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [described[p.pid] for p in procs if running(p)]
        assert not left, f"alive 20 s after serve got {how.name}: {left}"
    finally:
        for proc in [server, *procs]:
            try:
                proc.kill()
            except Exception:
                pass
        server.wait()
