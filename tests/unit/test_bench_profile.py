"""``bench load`` under VOICE_AGENT_BENCH_PROFILE: where the agent's time goes, by file group."""

from __future__ import annotations

import cProfile
from pathlib import Path

from voice_agent.calls.record import CallRecord
from voice_agent.dev.bench.load import PROFILE_GROUPS, profile_shares
from voice_agent.history import stored_form


def test_time_spent_in_the_history_code_is_counted_in_its_group(tmp_path: Path) -> None:
    record = CallRecord(session_id="s", channel_id="c", channel_name="PJSIP/x", caller="555",
                        tenant="techstore")
    record.turns += [{"heard": "where is my order 12345", "reply": "It has shipped."}] * 20

    def work() -> None:
        for _ in range(300):
            stored_form(record, "ari", redact_caller=False)  # voice_agent/history.py
        sum(i * i for i in range(200_000))  # and time elsewhere

    profiler = cProfile.Profile()
    profiler.runcall(work)
    profiler.dump_stats(tmp_path / "agent.prof")
    shares = profile_shares(tmp_path / "agent.prof")
    assert set(shares) == set(PROFILE_GROUPS)
    assert 0 < shares["records_and_history"] < 100
    # stored_form asks calls/metrics.py for the outcome: a little time there too
    assert shares["records_and_history"] > shares["metrics"] > 0
    assert shares["web_server"] == 0
