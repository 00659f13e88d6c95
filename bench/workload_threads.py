"""N threads of pure-Python work for a fixed time; prints the work done as JSON.

    workload_threads.py N SECONDS [SLEEPERS]

SLEEPERS more threads sleep, waking once a second (the idle threads of a server).
"""

import json
import sys
import threading
import time

n, seconds = int(sys.argv[1]), float(sys.argv[2])
sleepers = int(sys.argv[3]) if len(sys.argv) > 3 else 0
counts = [0] * n
stop = False
go = threading.Event()  # all start together: a thread started among spinners waits its turn for the GIL


def work(k):
    go.wait()
    while not stop:
        x = 0
        for i in range(1000):
            x += i
        counts[k] += 1


def idle(k):
    while not stop:
        time.sleep(1.0)


threads = [threading.Thread(target=work, args=(k,), name=f"work-{k}") for k in range(n)]
threads += [threading.Thread(target=idle, args=(k,), name=f"idle-{k}") for k in range(sleepers)]
for t in threads:
    t.start()
start = time.perf_counter()
go.set()
time.sleep(seconds)
stop = True
for t in threads:
    t.join()
elapsed = time.perf_counter() - start
print(json.dumps({"units": sum(counts), "elapsed": elapsed}), flush=True)
