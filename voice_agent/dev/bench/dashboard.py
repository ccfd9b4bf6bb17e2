"""``bench dashboard``: how fast the dashboard's pages render over a large history.

Stores ``calls`` synthetic calls (six turns each, with barge-ins and stage
stamps, spread over 30 days and the configured tenants) in a SQLite history through
the real writer, serves the real dashboard on a loopback port, and times each
page from an HTTP client, ``requests`` times each: a call's page (random calls),
the history's first page unfiltered and filtered, and the latency page. The
target (issue 16): a call page in < 300 ms with 10 000 stored calls. It also
reports the CPU that storing a call costs (the records' share of a core at a
given call rate).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from voice_agent.calls.record import CallRecord, CallState
from voice_agent.config import Settings
from voice_agent.dashboard.views import Dashboard
from voice_agent.dev.bench.media import RESULTS, _git_commit, machine
from voice_agent.dev.model_servers import free_tcp_port
from voice_agent.history import CallHistory, HistoryReader
from voice_agent.tenants import TenantRegistry
from voice_agent.web import running_web

TOKEN = "bench"
TARGET_CALL_PAGE_S = 0.3


def synthetic_call(rng: random.Random, tenant: str, started_at: float) -> CallRecord:
    """A plausible six-turn call: greeting, turns with stage stamps, one barge-in."""
    record = CallRecord(session_id=f"bench-{rng.getrandbits(48):x}", channel_id="c",
                        channel_name="PJSIP/bench", caller=f"+1555{rng.randrange(10**7):07d}",
                        tenant=tenant, end_reason=rng.choice(
                            ["agent ended the call", "caller hung up",
                             "transferred to 9100@voice-agent-operators"]))
    record.started_at = started_at
    mono = time.monotonic() - 600
    record.transitions += [(started_at, CallState.STARTING), (started_at + 0.3, CallState.GREETING),
                           (started_at + 3.0, CallState.LISTENING)]
    at = 4.0
    for index in range(6):
        said = rng.uniform(1.0, 3.0)
        response = rng.uniform(0.4, 1.4)
        record.turns.append({
            "speech_start": mono + at, "speech_end": mono + at + said, "end_of_turn_s": 0.2,
            "stt_final": mono + at + said + 0.25, "reply_ready": mono + at + said + 0.26,
            "first_audio": mono + at + said + response, "played": mono + at + said + response + 3,
            "heard": f"where is number {rng.randrange(10**5):05d} please ({index})",
            "reply": "Number 1 2 3 4 5 is on its way and should arrive on Thursday.",
            "turn_end": "complete", "intent": "status"})
        at += said + response + 3.5
    record.barge_ins.append({"onset": mono + 10.0, "stopped": mono + 10.1})
    record.ended_at = started_at + at + 1
    return record


def _fill(url: str, calls: int, progress: Callable[[str], None]) -> float:
    """Store ``calls`` synthetic calls; the CPU each cost (ms, submit and writer)."""
    tenants = TenantRegistry.load()
    rng = random.Random(7)
    now = time.time()
    records = [synthetic_call(rng, rng.choice(tenants.names), now - rng.uniform(0, 30 * 86400))
               for _ in range(calls)]
    history = CallHistory(url, tenants, retention_days=0)
    started = time.process_time()  # this process: the submitting side and the writer thread
    for index, record in enumerate(records):
        history.submit(record, "ari")
        if index % 2000 == 1999:
            progress(f"queued {index + 1} calls")
    history.close(timeout=600)
    cpu_ms = (time.process_time() - started) / calls * 1000
    progress(f"stored {history.stored} calls, {cpu_ms:.2f} ms of CPU each")
    return cpu_ms


async def _time(http: httpx.AsyncClient, paths: list[str]) -> dict[str, Any]:
    seconds = []
    for path in paths:
        started = time.perf_counter()
        response = await http.get(path)
        response.raise_for_status()
        seconds.append(time.perf_counter() - started)
    values = np.array(seconds)
    return {"requests": len(seconds), "p50_s": float(np.percentile(values, 50)),
            "p95_s": float(np.percentile(values, 95)), "max_s": float(values.max())}


async def run(calls: int, requests: int, progress: Callable[[str], None] = print
              ) -> dict[str, Any]:
    commit = _git_commit()
    with tempfile.TemporaryDirectory(prefix="voice-agent-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'history.sqlite3'}"
        store_cpu_ms = await asyncio.to_thread(_fill, url, calls, progress)
        reader = HistoryReader(url)
        ids = [row["id"] for row in reader.recent(calls)]
        tenants = TenantRegistry.load()
        dashboard = Dashboard(token=TOKEN, tenants=tenants, live=list,
                              history=reader)
        settings = Settings(_env_file=None, web_port=free_tcp_port())
        async with running_web(settings, dashboard) as port, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=60,
                headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            rng = random.Random(3)
            pages = {
                "call_page": [f"/calls/{rng.choice(ids)}" for _ in range(requests)],
                "history_page": ["/calls"] * max(1, requests // 5),
                "history_filtered": [f"/calls?tenant={tenants.names[0]}&outcome=caller_hung_up"]
                * max(1, requests // 5),
                "latency_page": ["/latency"] * max(1, requests // 20),
            }
            figures = {}
            for name, paths in pages.items():
                figures[name] = await _time(http, paths)
                progress(f"{name}: p50 {figures[name]['p50_s'] * 1000:.0f} ms, "
                         f"p95 {figures[name]['p95_s'] * 1000:.0f} ms")
        reader.close()
    return {"kind": "dashboard", "stored_calls": calls, "pages": figures,
            # what storing one six-turn call costs (redaction, JSON, SQLite insert)
            "store_cpu_ms_per_call": store_cpu_ms,
            "target": {"call_page_s": TARGET_CALL_PAGE_S},
            "meets_target": figures["call_page"]["p95_s"] < TARGET_CALL_PAGE_S,
            "database": "sqlite (the default)", "commit": commit, "machine": machine(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def save(result: dict[str, Any], results: Path = RESULTS) -> Path:
    """``dashboard.json`` (no plot: four numbers a page)."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / "dashboard.json"
    path.write_text(json.dumps(result, indent=2))
    return path
