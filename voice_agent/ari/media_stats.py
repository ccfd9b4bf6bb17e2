"""What the agent process reports about its own media timing (for benchmarks).

``voice-agent serve --stats-file F`` writes this on shutdown, so a benchmark
can read the agent's side (tick lateness on the media clock) without sharing
its process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from voice_agent.ari.ari_session_manager import SessionManager

LATE_THRESHOLD = 0.005  # a frame sent > 5 ms after its deadline counts as late


def media_stats(manager: SessionManager) -> dict[str, Any]:
    """Media clock lateness percentiles and late-frame share, plus call counters."""
    stats: dict[str, Any] = {"calls_total": manager.calls_total,
                             "rejected": len(manager.rejected)}
    rtp = manager.media.rtp_server if manager.media is not None else None
    if rtp is not None and rtp.clock.stats.lateness:
        late = np.asarray(rtp.clock.stats.lateness)
        stats["clock"] = {
            "ticks": rtp.clock.stats.ticks,
            "skipped_ticks": rtp.clock.stats.skipped,
            "lateness_ms_p50": float(np.percentile(late, 50) * 1000),
            "lateness_ms_p99": float(np.percentile(late, 99) * 1000),
            "lateness_ms_max": float(late.max() * 1000),
            "late_tick_pct": float((late > LATE_THRESHOLD).mean() * 100),
        }
        stats["rtp"] = {"datagrams": rtp.stats.datagrams,
                        "unknown_source": rtp.stats.unknown_source,
                        "malformed": rtp.stats.malformed}
    return stats


def write(manager: SessionManager, path: Path) -> None:
    path.write_text(json.dumps(media_stats(manager), indent=2))
