"""Exponential backoff with jitter: the one retry schedule of the process.

Used by the ARI events socket's reconnect loop and by provider clients that
retry a request which failed before producing anything.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff_delays(
    initial: float, maximum: float, *, factor: float = 2.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Reconnect delays: exponential growth capped at ``maximum``, with "equal jitter".

    Each delay is uniform in [base/2, base] where base doubles per attempt. The
    jitter keeps 50 agents that lost the same Asterisk from reconnecting in
    lockstep; the lower half-bound keeps the growth monotone on average.
    """
    rng = rng or random.Random()
    base = initial
    while True:
        yield base / 2 + rng.random() * base / 2
        base = min(maximum, base * factor)
