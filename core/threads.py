"""How fits share the cores: OpenMP threads per calling thread.

scikit-learn's histogram boosting (and its predictions) run OpenMP parallel regions, many short
ones per iteration. OpenMP keeps a team of worker threads for every Python thread that asked for
more than one thread, for as long as that Python thread lives. Once the teams together hold more
threads than there are cores, OpenMP stops spinning between regions and puts its workers to sleep
after each one, and every fit in the process becomes several times slower (measured here: a
261-iteration refit on 15k rows took 2.8 s instead of 0.3 s, once a prediction in a side thread
had used two threads). So only the flow's own thread runs OpenMP wide: trials on the threads
runner and tasks submitted beside the flow use one thread each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def openmp_threads(limit: int | None) -> Iterator[None]:
    """Limit OpenMP threads in this thread for the block (None: leave as is)."""
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="openmp"):
        yield


def on_one_openmp_thread(function: Callable[P, R]) -> Callable[P, R]:
    """Run `function` with one OpenMP thread: for work submitted to run beside the flow's thread."""

    @functools.wraps(function)
    def one_thread(*args: P.args, **kwargs: P.kwargs) -> R:
        with openmp_threads(1):
            return function(*args, **kwargs)

    one_thread.one_openmp_thread = True  # type: ignore[attr-defined]
    return one_thread
