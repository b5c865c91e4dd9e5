"""Progress bars that appear only when a call is slow enough to need one.

    >>> bar = progress_bar(len(prompts), "sampling")      # drawn after DELAY_S, never on a fast call
    >>> for chunk in chunks: ...; bar.update(len(chunk))
    >>> bar.close()                                        # a bar that was drawn disappears when done

`show=None` (the library's default) draws a tqdm.auto bar (a widget in Jupyter, text elsewhere) at the
first update after the work has run for `DELAY_S` seconds, so a fast call prints nothing (and builds
no widget) while a slow one never looks stuck. `show=True` draws it at once, `show=False` never. Bars
are drawn from the main thread only: a stage's background thread would print into whichever notebook
cell happens to run next. One bar at a time: a `show=None` bar opened while another bar is open (one of
ours, or any tqdm bar, e.g. a notebook's own loop over refits) stays hidden, so a loop of fits shows its
one outer bar instead of a new "scoring" bar for every fit. Inside `with silenced():` no bar is drawn
at all (`rlhf-lab demo --quiet`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

DELAY_S = 2.0
"""Seconds a call runs before its bar appears (show=None)."""

_silenced = 0  # > 0 inside `silenced()`: no bar is drawn, whatever `show` says

_open_bars: weakref.WeakSet[Progress] = weakref.WeakSet()  # main-thread bars not closed yet


def _another_bar_is_open() -> bool:
    """One of our bars is open (drawn or still waiting for DELAY_S), or a tqdm bar is on screen."""
    if any(not bar.closed for bar in list(_open_bars)):
        return True
    from tqdm.std import tqdm as std_tqdm  # tqdm.auto's notebook and text bars register here too

    return any(not getattr(bar, "disable", False) for bar in list(getattr(std_tqdm, "_instances", ())))


class Progress:
    """A tqdm.auto bar created on demand: `update(k)`, `close()`, `n` and `total` as in tqdm."""

    def __init__(self, total: int | None, desc: str, show: bool | None, **tqdm_kwargs: Any) -> None:
        self.total, self.desc, self.n = total, desc, 0
        on_main = threading.current_thread() is threading.main_thread()
        self._enabled = not _silenced and (
            bool(show) or (show is None and on_main and not _another_bar_is_open())
        )
        if self._enabled and on_main:
            _open_bars.add(self)
        self._start = time.monotonic() - (DELAY_S if show else 0.0)
        self._kwargs = tqdm_kwargs
        self._bar: Any = None
        self._postfix: dict[str, Any] = {}
        self.closed = False

    @property
    def shown(self) -> bool:
        """Whether the bar has been drawn."""
        return self._bar is not None

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.closed or not self._enabled:
            return
        if self._bar is None and time.monotonic() - self._start >= DELAY_S:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total, desc=self.desc, leave=False, initial=self.n - k, **self._kwargs
            )
            if self._postfix:
                self._bar.set_postfix(self._postfix, refresh=False)
        if self._bar is not None:
            self._bar.update(k)

    def set_postfix(self, **values: Any) -> None:
        """Text after the bar (e.g. the latest loss), as tqdm's set_postfix."""
        self._postfix = values
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self, *, finished: bool = False) -> None:
        """Close the bar. `finished=True`: done even if short of `total` (early stopping, a stopped run);
        tqdm's notebook bar would otherwise stay on screen in red, as if the call had failed."""
        self.closed = True
        _open_bars.discard(self)
        if self._bar is None:
            return
        if finished and self._bar.total is not None and self._bar.n < self._bar.total:
            self._bar.total = self._bar.n
        self._bar.close()


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No bar at all while inside, even one asked for with show=True (`rlhf-lab demo --quiet`).

    >>> with silenced():
    ...     report = run_demo(preset="tiny")
    """
    global _silenced
    _silenced += 1
    try:
        yield
    finally:
        _silenced -= 1


def progress_bar(total: int | None, desc: str, *, show: bool | None = None, **tqdm_kwargs: Any) -> Progress:
    """A bar over `total` units; see the module docstring for `show`."""
    return Progress(total, desc, show, **tqdm_kwargs)


def wait_with_progress(
    ended: threading.Event,
    done: Callable[[], int],
    total: int | None,
    desc: str,
    *,
    timeout: float | None = None,
    show: bool | None = None,
    poll_s: float = 0.2,
) -> bool:
    """Wait until `ended` is set (up to `timeout` seconds) with a bar of `done()` units out of `total`;
    True once it is set.

    An Event rather than `Thread.join`: a KeyboardInterrupt inside `join` (the notebook's stop button)
    makes CPython 3.11 and 3.12 mark a thread that is still running as stopped (`Thread.
    _wait_for_tstate_lock` releases the thread's own lock, the bpo-45274 fix), so `is_alive()` turns
    False while it trains on, and a second run could start beside it.
    """
    bar = progress_bar(total, desc, show=show)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not ended.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            ended.wait(poll_s if left is None else min(poll_s, left))
            bar.update(done() - bar.n)
    finally:
        bar.close(finished=True)
    return ended.is_set()
