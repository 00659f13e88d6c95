"""The workload behind tests/data/threads.gilviz (remake: see tests/test_tui.py)."""

import hashlib
import threading
import time

END = time.monotonic() + 1.5
lock = threading.Lock()
lock.acquire()


def spin():
    while time.monotonic() < END:
        pass


def sleeper():
    while time.monotonic() < END:
        time.sleep(0.05)


def blocked():
    with lock:
        pass


def hasher():
    buf = b"x" * (1 << 20)
    while time.monotonic() < END:
        hashlib.sha256(buf).digest()


threads = [threading.Thread(target=spin, name="spin-1"), threading.Thread(target=spin, name="spin-2"),
           threading.Thread(target=sleeper, name="sleeper"), threading.Thread(target=blocked, name="blocked"),
           threading.Thread(target=hasher, name="hasher")]
for t in threads:
    t.start()
while time.monotonic() < END:
    time.sleep(0.1)
print("releasing the lock", flush=True)
lock.release()
for t in threads:
    t.join()
