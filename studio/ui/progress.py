"""The status line of a running job: "Step 5 of 20 · about 12 s left", the time estimated from the steps so far.

Gradio's own bar shows an ETA too, but over the results; the status line is where the eye rests, and what an API
client reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StepClock:
    """The time a job has left, from the pace of its steps so far. The first step seen is the starting line, not a
    sample (it carries the model load and warm-up); a step count that goes back (the job runs again) starts over."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._first: tuple[int, float] | None = None
        self._last = 0

    def left(self, step: int, total: int) -> float | None:
        """Seconds left after `step` of `total`; None until two steps have been seen, and at the end."""
        now = self._now()
        if self._first is None or step < self._last:
            self._first = (step, now)
        self._last = step
        done = step - self._first[0]
        if done <= 0 or step >= total:
            return None
        return (now - self._first[1]) / done * (total - step)


def step_text(step: int, total: int, left: float | None) -> str:
    """"Step 5 of 20 · about 12 s left" (the seconds part once there is an estimate)."""
    text = f"Step {step} of {total}"
    if left is None:
        return text
    if left < 60:
        return f"{text} · about {max(1, round(left))} s left"
    return f"{text} · about {round(left / 60)} min left"
