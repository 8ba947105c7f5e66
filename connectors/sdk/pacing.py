"""A token-bucket pacer that keeps a loop at a target rate (events per second)."""

from __future__ import annotations

import time


class Pacer:
    """Call once per event; sleeps as needed so calls average ``rate`` per second."""

    def __init__(self, rate: float, burst: int = 100) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self.burst = burst
        self._next = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        # Allow a small burst after idle time, but never bank more than `burst` events.
        self._next = max(self._next, now - self.burst * self.interval) + self.interval
        delay = self._next - now
        if delay > 0.001:
            time.sleep(delay)
