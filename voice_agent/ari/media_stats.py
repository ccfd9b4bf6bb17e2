"""What the agent process reports about itself (for benchmarks and soak tests).

``voice-agent serve --stats-file F`` rewrites this every few seconds and on
shutdown, so a benchmark can read the agent's side (tick lateness on the media
clock, live calls, asyncio tasks, open file descriptors) without sharing its
process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from voice_agent.ari.ari_session_manager import SessionManager
from voice_agent.media.media_clock import LATE_THRESHOLD


def media_stats(manager: SessionManager) -> dict[str, Any]:
    """Media clock lateness percentiles and late-frame share, plus call counters."""
    stats: dict[str, Any] = {"calls_total": manager.calls_total,
                             "rejected": len(manager.rejected),
                             "live_calls": len(manager.sessions),
                             "tasks": len(asyncio.all_tasks()),
                             "fds": _open_fds(),
                             # Python's own heap, to tell a leak of objects from
                             # allocator fragmentation when RSS drifts in a soak
                             "py_blocks": sys.getallocatedblocks(),
                             "records_kept": len(manager.completed),
                             "errors": sum(len(r.errors) for r in manager.completed)}
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


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return None


def write(manager: SessionManager, path: Path) -> None:
    """Replace ``path`` atomically, so a reader never sees half a file."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(media_stats(manager), indent=2))
    partial.replace(path)


async def keep_writing(manager: SessionManager, path: Path, interval: float = 5.0) -> None:
    """Rewrite the stats every ``interval`` seconds until cancelled (soak time series)."""
    while True:
        await asyncio.sleep(interval)
        write(manager, path)
