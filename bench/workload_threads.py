"""N threads of pure-Python work for a fixed time; prints the work done as JSON."""

import json
import sys
import threading
import time

n, seconds = int(sys.argv[1]), float(sys.argv[2])
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


threads = [threading.Thread(target=work, args=(k,), name=f"work-{k}") for k in range(n)]
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
