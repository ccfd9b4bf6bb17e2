"""Prometheus metrics of every call, from the one record both entry points keep.

Counted once per call, when it ends (:func:`call_finished`), from its
:class:`~voice_agent.calls.record.CallRecord`: turns, stage timings, barge-ins,
resumed pauses and provider errors. Nothing is counted on the media path, so a
20 ms frame never pays for metrics. What is *live* (calls in progress and their
state, late media frames, ARI reconnects) is read when Prometheus scrapes,
through sources the service registers (:func:`add_source`).

The ARI agent and the AGI fallback export the same names; ``entry`` tells them
apart. The process's CPU and memory come from prometheus-client's own process
collector (``process_cpu_seconds_total``, ``process_resident_memory_bytes``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voice_agent.calls.record import CallRecord, RejectedCall

log = logging.getLogger(__name__)

#: Seconds; from a fast local stage (ms) to a slow remote model (seconds).
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

CALLS = Counter("voice_agent_calls", "Calls that ended, by outcome.",
                ["entry", "tenant", "outcome"])
REJECTED = Counter("voice_agent_admission_rejects", "Calls turned away before a session.",
                   ["entry", "reason"])
TURNS = Counter("voice_agent_turns", "Caller turns answered.", ["entry", "tenant"])
BARGE_INS = Counter("voice_agent_barge_ins", "Replies the caller interrupted.",
                    ["entry", "tenant"])
PAUSES = Counter("voice_agent_barge_in_pauses_resumed",
                 "Replies paused by sound over them and resumed (noise, backchannel): "
                 "what would have been false barge-ins.", ["entry", "tenant", "reason"])
PROVIDER_ERRORS = Counter("voice_agent_provider_errors", "Provider failures, by stage.",
                          ["entry", "stage", "provider"])
STAGES = {
    name: Histogram(f"voice_agent_{name}_seconds", text, ["entry", "tenant"], buckets=_BUCKETS)
    for name, text in {
        "end_of_turn": "Caller's last speech frame to the end of turn decided.",
        "stt": "End of turn to the transcript (early transcription hides most of it).",
        "reply": "Transcript to the first clause of the reply (rule engine or LLM).",
        "tts_first_audio": "Reply clause to its first synthesized audio queued.",
        "response": "End of turn to the first reply audio queued (the agent's share of "
                    "voice-to-voice; the end-of-turn wait and the network come on top).",
    }.items()
}
#: Stage name → (turn record key where it starts, key where it ends).
_SPANS = {"stt": ("speech_end", "stt_final"), "reply": ("stt_final", "reply_ready"),
          "tts_first_audio": ("reply_ready", "first_audio"),
          "response": ("speech_end", "first_audio")}


#: End reasons of calls the service could not serve (its own failure, whatever followed).
GAVE_UP = ("error", "internal error", "transfer", "media connection lost", "cannot speak",
           "audio directory full")


def outcome(record: CallRecord) -> str:
    """completed, transferred, caller_hung_up, interrupted (shutdown) or error."""
    reason = record.end_reason
    if reason.startswith("transferred") or "; transferred to " in reason:
        return "transferred"  # also a failed call handed to a person ("cannot speak; …")
    if reason.startswith(GAVE_UP):
        return "error"
    if reason == "service shutdown":
        return "interrupted"
    if "hung up" in reason:
        return "caller_hung_up"
    return "completed"


def call_finished(record: CallRecord, entry: str) -> None:
    """Count one ended call: its outcome, turns, stage timings, barge-ins and errors."""
    tenant = record.tenant or "unknown"
    CALLS.labels(entry, tenant, outcome(record)).inc()
    for turn in record.turns:
        if "reply" in turn and not turn.get("silence"):
            TURNS.labels(entry, tenant).inc()
        if (waited := turn.get("end_of_turn_s")) is not None:
            STAGES["end_of_turn"].labels(entry, tenant).observe(waited)
        for stage, (start, end) in _SPANS.items():
            if start in turn and end in turn:
                STAGES[stage].labels(entry, tenant).observe(max(0.0, turn[end] - turn[start]))
        for pause in turn.get("pauses", ()):
            PAUSES.labels(entry, tenant, pause.get("reason", "")).inc()
    if record.barge_ins:
        BARGE_INS.labels(entry, tenant).inc(len(record.barge_ins))
    for error in record.errors:
        PROVIDER_ERRORS.labels(entry, error.get("stage", ""), error.get("provider", "")).inc()


def call_rejected(rejected: RejectedCall, entry: str) -> None:
    REJECTED.labels(entry, rejected.reason).inc()


Source = Callable[[], Iterable[Metric]]


class _Sources(Collector):
    """Metrics read at scrape time from the running service (live calls, media, ARI)."""

    def __init__(self) -> None:
        self._sources: dict[str, Source] = {}

    def collect(self) -> Iterator[Metric]:
        for name, source in list(self._sources.items()):
            try:
                yield from source()
            except Exception:  # a broken source must not take /metrics down
                log.exception("metrics source %s failed", name)

    def add(self, name: str, source: Source) -> None:
        self._sources[name] = source

    def remove(self, name: str) -> None:
        self._sources.pop(name, None)


_SOURCES = _Sources()
REGISTRY.register(_SOURCES)


def add_source(name: str, source: Source) -> None:
    """Read ``source`` at every scrape until :func:`remove_source` (same ``name``)."""
    _SOURCES.add(name, source)


def remove_source(name: str) -> None:
    _SOURCES.remove(name)


def live_calls(entry: str, records: Callable[[], Iterable[CallRecord]]) -> Source:
    """A source counting the calls in progress by tenant and state."""
    def collect() -> Iterable[Metric]:
        family = GaugeMetricFamily("voice_agent_calls_live", "Calls in progress.",
                                   labels=["entry", "tenant", "state"])
        counts: dict[tuple[str, str], int] = {}
        for record in records():
            state = record.transitions[-1][1].value if record.transitions else "starting"
            key = (record.tenant or "unknown", state)
            counts[key] = counts.get(key, 0) + 1
        for (tenant, state), count in counts.items():
            family.add_metric([entry, tenant, state], count)
        return [family]
    return collect
