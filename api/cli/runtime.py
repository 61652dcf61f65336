"""The serving process's runtime tuning, in one place: `ledger serve` applies it once start-up is
done, and `ledger bench` at the same point, so that the bench measures what the server runs.

Why the garbage collector: a read such as a teacher's grid (3,000 cells) allocates enough
container objects to run the collector several times, and now and then that includes a full
collection, whose cost grows with everything the process holds: the imported modules, the
application, the pools. That made the grid's p99 several times its median. Objects that live
from start-up to shutdown need never be traversed again, so they are moved out of the
collector's reach (`gc.freeze`), and the youngest generation is collected less often, so that
one read's short-lived objects mostly die before they would be promoted. Reference counting
frees almost everything anyway; the collector is only for cycles, which are still collected.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Container allocations (less deallocations) between two collections of the youngest
# generation: the library's default is 700. The older generations keep their defaults.
YOUNG_THRESHOLD = 20_000


def tune_after_start_up() -> None:
    """Call once, when the process has opened everything it keeps (the services, the read
    models, the keys) and before it serves: what is alive now is alive until shutdown."""
    gc.collect()  # what start-up left behind goes first, so that it is not frozen with the rest
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


@contextlib.contextmanager
def tuned_after_start_up() -> Iterator[None]:
    """`tune_after_start_up` for a run inside a longer-lived process (the bench, run by the
    tests too), which gets its collector back as it was afterwards."""
    threshold = gc.get_threshold()
    tune_after_start_up()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
