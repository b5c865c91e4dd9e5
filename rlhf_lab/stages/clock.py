"""The lab-wide step counter, so SFT -> RM -> PPO share one x axis (`lab_step`).

>>> clock = StepClock()
>>> clock.tick(), clock.tick()      # (1, 2): every stage of a lab ticks the same clock
"""

from __future__ import annotations

import threading


class StepClock:
    """A lab-wide step counter, so SFT -> RM -> PPO share one x axis (`lab_step`)."""

    def __init__(self, start: int = 0) -> None:
        self._value = start
        self._lock = threading.Lock()

    def tick(self) -> int:
        with self._lock:
            self._value += 1
            return self._value

    @property
    def value(self) -> int:
        return self._value

    def advance_to(self, value: int) -> None:
        with self._lock:
            self._value = max(self._value, value)
