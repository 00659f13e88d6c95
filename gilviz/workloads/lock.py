"""The race fixed: a threading.Lock around each increment, and no update is lost.

The same threads and the same `counter += step()` as race, each increment inside
`with lock:`. A thread that loses the GIL while holding the lock makes the others block
on the lock itself, which is a different wait from waiting for the GIL. On the timeline:
threads blocked on the lock, fewer increments per second than race, and a final count
equal to the expected one.
"""

import threading

import race


def build_parser():
    return race.build_parser(__doc__)


if __name__ == "__main__":
    race.run(build_parser().parse_args(), "lock", lock=threading.Lock())
