"""Metrics (counted from each ended call's record, live state read at scrape, /metrics)
and JSON logs tagged with the call."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterable

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

from voice_agent.calls import metrics
from voice_agent.calls.admission import Admission
from voice_agent.calls.log_context import JsonFormatter, in_call
from voice_agent.calls.record import CallRecord, CallState, RejectedCall
from voice_agent.config import Settings
from voice_agent.dev.model_servers import free_tcp_port
from voice_agent.web import WebError, running_web


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def a_call(tenant: str = "metrics-test", reason: str = "agent ended the call") -> CallRecord:
    record = CallRecord(session_id="s", channel_id="c", channel_name="SIP/c", caller="555",
                        tenant=tenant, end_reason=reason)
    record.turns.append({"speech_end": 10.0, "stt_final": 10.1, "reply_ready": 10.15,
                         "first_audio": 10.4, "end_of_turn_s": 0.2, "reply": "Hello.",
                         "pauses": [{"reason": "backchannel"}]})
    record.turns.append({"apology": True, "first_audio": 11.0})  # not an answered turn
    record.barge_ins.append({"onset": 1.0})
    record.errors.append({"stage": "tts", "provider": "piper", "error": "boom"})
    return record


@pytest.mark.parametrize(("reason", "outcome"), [
    ("agent ended the call", "completed"), ("completed", "completed"),
    ("transferred to 9000@operators", "transferred"), ("caller hung up", "caller_hung_up"),
    ("error: ARI 500", "error"), ("transfer to 9000@x failed: 404", "error"),
    ("service shutdown", "interrupted"), ("media connection lost", "error"),
    ("cannot speak: TTS down", "error"), ("audio directory full", "error"),
    ("cannot speak: TTS down; transferred to 9100@ops", "transferred"),
    ("audio directory full; transferred to 9100@ops", "transferred"),
])
def test_outcomes(reason: str, outcome: str) -> None:
    assert metrics.outcome(a_call(reason=reason)) == outcome


def test_an_ended_call_counts_its_turns_stages_barge_ins_pauses_and_errors() -> None:
    labels = {"entry": "agi", "tenant": "metrics-test"}
    before = {name: sample(name, **labels) for name in (
        "voice_agent_turns_total", "voice_agent_barge_ins_total",
        "voice_agent_response_seconds_count", "voice_agent_response_seconds_sum",
        "voice_agent_end_of_turn_seconds_count")}
    calls = sample("voice_agent_calls_total", outcome="completed", **labels)
    pauses = sample("voice_agent_barge_in_pauses_resumed_total", reason="backchannel", **labels)
    errors = sample("voice_agent_provider_errors_total", entry="agi", stage="tts",
                    provider="piper")
    Admission(5, "busy", entry="agi").finished(a_call())
    assert sample("voice_agent_calls_total", outcome="completed", **labels) == calls + 1
    assert sample("voice_agent_turns_total", **labels) == before["voice_agent_turns_total"] + 1
    assert sample("voice_agent_barge_ins_total", **labels) == \
        before["voice_agent_barge_ins_total"] + 1
    assert sample("voice_agent_response_seconds_count", **labels) == \
        before["voice_agent_response_seconds_count"] + 1
    assert sample("voice_agent_response_seconds_sum", **labels) == pytest.approx(
        before["voice_agent_response_seconds_sum"] + 0.4)
    assert sample("voice_agent_end_of_turn_seconds_count", **labels) == \
        before["voice_agent_end_of_turn_seconds_count"] + 1
    assert sample("voice_agent_barge_in_pauses_resumed_total", reason="backchannel",
                  **labels) == pauses + 1
    assert sample("voice_agent_provider_errors_total", entry="agi", stage="tts",
                  provider="piper") == errors + 1


def test_rejections_are_counted_by_reason() -> None:
    before = sample("voice_agent_admission_rejects_total", entry="ari", reason="limit-test")
    Admission(5, "busy").reject(RejectedCall("c", "SIP/c", "limit-test", "busy"))
    assert sample("voice_agent_admission_rejects_total", entry="ari",
                  reason="limit-test") == before + 1


def test_live_calls_are_read_at_scrape_and_a_broken_source_does_not_break_it() -> None:
    live = [a_call("live-test"), a_call("live-test")]
    live[0].transitions.append((0.0, CallState.SPEAKING))

    def broken() -> Iterable[Metric]:
        raise RuntimeError("source bug")

    metrics.add_source("test-live", metrics.live_calls("ari", lambda: live))
    metrics.add_source("test-broken", broken)
    try:
        assert sample("voice_agent_calls_live", entry="ari", tenant="live-test",
                      state="speaking") == 1
        assert sample("voice_agent_calls_live", entry="ari", tenant="live-test",
                      state="starting") == 1
        live.clear()
        assert sample("voice_agent_calls_live", entry="ari", tenant="live-test",
                      state="speaking") == 0
    finally:
        metrics.remove_source("test-live")
        metrics.remove_source("test-broken")


async def test_metrics_are_served_and_a_taken_port_is_a_clear_error() -> None:
    settings = Settings(_env_file=None, web_port=free_tcp_port())
    async with running_web(settings) as port:
        assert port == settings.web_port
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert "process_resident_memory_bytes" in response.text
        assert "# TYPE voice_agent_calls_total counter" in response.text
        with pytest.raises(WebError, match="VOICE_AGENT_WEB_PORT"):
            async with running_web(settings):
                pass
    async with running_web(Settings(_env_file=None, web_port=0)) as port:
        assert port is None
    with socket.socket() as probe:  # released at the end of the block
        probe.bind(("127.0.0.1", settings.web_port))


async def test_json_log_lines_carry_the_call_of_the_task_that_logged_them() -> None:
    formatter = JsonFormatter()
    lines: list[dict[str, object]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(formatter.format(record)))

    logger = logging.getLogger("voice_agent.test_json")
    logger.addHandler(handler := Collect())
    logger.setLevel(logging.INFO)

    async def call(call_id: str) -> None:
        in_call(call_id, "healthplus")
        await asyncio.sleep(0)
        await asyncio.to_thread(logger.info, "in a worker thread of %s", call_id)
        logger.info("in the call task")

    try:
        await asyncio.gather(call("a1"), call("b2"))
        logger.warning("outside any call")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    tagged = [(line["call_id"], line["message"]) for line in lines if "call_id" in line]
    assert sorted(tagged) == [("a1", "in a worker thread of a1"), ("a1", "in the call task"),
                              ("b2", "in a worker thread of b2"), ("b2", "in the call task")]
    assert all(line["tenant"] == "healthplus" for line in lines if "call_id" in line)
    outside, failed = lines[-2:]
    assert "call_id" not in outside and outside["level"] == "WARNING"
    assert "ValueError: boom" in str(failed["exc"])
