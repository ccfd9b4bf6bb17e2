"""Fuzz targets for every parser of outside input, and ``bench fuzz`` that runs them long.

Each :class:`Target` pairs a Hypothesis strategy with a check: the parser must
return a value or raise our own typed error with a message. Anything else (an
unhandled exception, a wrong type out) is a failure. The unit suite runs every
target with a bounded example count (``tests/unit/test_fuzz.py``); the
benchmark runs them with ``--examples N`` and writes ``bench/results/fuzz.json``
with, per parser, the examples tried, the failures found and the (shrunk)
failing input.

Strategies mix pure noise with near-valid inputs built from the real formats,
so the interesting paths (a header that almost parses, a JSON chunk with one
wrong type) are reached, not just the first length check.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from voice_agent.agi.protocol import AgiError, ResponseParser, parse_environment, parse_response
from voice_agent.ari.ari_session_manager import event_problem
from voice_agent.ari.asterisk_ari import parse_event
from voice_agent.dev.bench.media import RESULTS, _git_commit, machine
from voice_agent.media.rtp import RtpParseError, parse_rtp
from voice_agent.media.websocket_transport import parse_control
from voice_agent.providers.errors import ProviderError
from voice_agent.providers.llm import ChatStreamDecoder
from voice_agent.tenants import TenantFileError, TenantRegistry

# JSON values of any shape: what a broken or hostile server can send.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)


@dataclass(frozen=True)
class Target:
    """One parser under fuzz: inputs, and the check each input must pass."""

    name: str
    inputs: st.SearchStrategy[Any]
    check: Callable[[Any], None]


# ------------------------------------------------------------------------ RTP
@st.composite
def rtp_like(draw: st.DrawFn) -> bytes:
    """A header with any version, padding, extension and CSRC count, then any tail."""
    header = struct.pack("!BBHII", draw(st.integers(0, 255)), draw(st.integers(0, 255)),
                         draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 2**32 - 1)),
                         draw(st.integers(0, 2**32 - 1)))
    return header + draw(st.binary(max_size=200))


def check_rtp(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpParseError as exc:
        assert str(exc), "an RtpParseError must say why"
        return
    assert 0 <= packet.payload_type < 128 and len(packet.payload) <= len(data)


# --------------------------------------------------------- chan_websocket control
def check_websocket_control(message: str) -> None:
    try:
        command, fields = parse_control(message)
    except ValueError:
        return  # the transport logs and ignores it
    assert isinstance(command, str) and all(isinstance(v, str) for v in fields.values())


# ------------------------------------------------------------------ ARI events
ari_channels = json_values | st.fixed_dictionaries(
    {"id": st.text(max_size=6) | json_values},
    optional={"name": st.sampled_from(["PJSIP/x-1", "UnicastRTP/1"]) | json_values,
              "caller": json_values | st.fixed_dictionaries({"number": json_values}),
              "dialplan": json_values})
#: Events the session manager handles, each field missing, mistyped or right.
ari_events = st.fixed_dictionaries(
    {"type": st.sampled_from(["StasisStart", "StasisEnd", "ChannelDestroyed",
                              "ChannelDtmfReceived", "PlaybackFinished", "Unknown"]) | json_values},
    optional={"channel": ari_channels, "args": st.lists(st.sampled_from(
        ["acme", "nobody", ""]), max_size=2) | json_values,
        "digit": json_values, "playback": json_values, "cause_txt": json_values})


def check_ari_event(message: str) -> None:
    """The events socket's gate: bad JSON is a ValueError; an accepted event either
    names its problem or carries the fields the handlers read. (The handlers
    themselves are fuzzed against a fake ARI in the unit suite.)"""
    try:
        event = parse_event(message)
    except ValueError as exc:
        assert str(exc), "a ValueError must say why"
        return
    problem = event_problem(event)
    if problem is not None:
        assert isinstance(problem, str) and problem
        return
    if event["type"] == "PlaybackFinished":
        assert isinstance(event["playback"]["id"] if "id" in event["playback"] else "", str)
    else:
        channel = event["channel"]
        assert isinstance(channel["id"], str) and isinstance(channel.get("name", ""), str)
        assert all(isinstance(arg, str) for arg in event.get("args") or [])


# ------------------------------------------------------------------------ AGI
agi_lines = st.text(max_size=80) | st.builds(
    "{} {}".format, st.sampled_from(["200", "510", "511", "520", "520-", "100", "2OO", ""]),
    st.text(max_size=40) | st.builds("result={}{}".format, st.text(max_size=5),
                                     st.text(max_size=20)))


def check_agi_reply(line: str) -> None:
    try:
        response = parse_response(line)
    except AgiError as exc:
        assert str(exc), "an AgiError must say why"
        return
    assert isinstance(response.code, int)


def check_agi_stream(lines: list[str]) -> None:
    """A multi-line 520 usage reply wrapped around anything."""
    parser = ResponseParser()
    for line in ["520-Invalid command syntax.  Proper usage follows:", *lines,
                 "520 End of proper usage."]:
        try:
            parser.feed(line)
        except AgiError as exc:
            assert str(exc)


def check_agi_environment(lines: list[str]) -> None:
    try:
        request = parse_environment(lines)
    except AgiError:
        return
    assert isinstance(request.variables, dict)


# --------------------------------------------------- OpenAI-compatible SSE streams
chunks = json_values | st.fixed_dictionaries({"choices": st.lists(st.fixed_dictionaries({
    "delta": st.fixed_dictionaries({}, optional={
        "content": json_values,
        "tool_calls": st.lists(st.fixed_dictionaries({}, optional={
            "index": json_values, "id": json_values,
            "function": st.fixed_dictionaries({}, optional={
                "name": st.text(max_size=8) | json_values,
                "arguments": st.sampled_from(["{", "}", '{"a": 1}', "[]"]) | json_values})}),
            max_size=2)}),
}, optional={"finish_reason": json_values}), max_size=2)}, optional={"usage": json_values})


def check_llm_stream(case: tuple[list[str], bool]) -> None:
    lines, done = case
    decoder = ChatStreamDecoder()
    try:
        for line in [*lines, "data: [DONE]"] if done else lines:
            decoder.feed(line)
        decoder.end_of_stream()
    except ProviderError as exc:
        assert str(exc), "a ProviderError must say why"


# --------------------------------------------------------------- tenant files
tenant_docs = st.text(max_size=200) | json_values.map(json.dumps) | st.fixed_dictionaries(
    {"name": json_values, "display_name": json_values, "greeting_prompt": json_values},
    optional={"silence_ms": json_values, "providers": json_values,
              "numbers": json_values}).map(json.dumps)


def check_tenant_file(document: str) -> None:
    with tempfile.TemporaryDirectory(prefix="va-fuzz-") as tmp:
        (Path(tmp) / "fuzzed.yaml").write_text(document, encoding="utf-8")
        try:
            registry = TenantRegistry.load(Path(tmp))
        except TenantFileError as exc:
            assert "fuzzed.yaml" in str(exc), "a TenantFileError must name the file"
            return
        assert all(tenant.name for tenant in registry)


TARGETS: tuple[Target, ...] = (
    Target("rtp", st.binary(max_size=300) | rtp_like(), check_rtp),
    Target("websocket_control", st.text(max_size=200) | st.lists(
        st.sampled_from(["MEDIA_START", "MEDIA_XOFF", "MEDIA_XON", "connection_id:x",
                         "format:slin16", "optimal_frame_size:640", ":", "a:b:c", " "]),
        max_size=6).map(" ".join), check_websocket_control),
    Target("ari_event", st.text(max_size=120) | ari_events.map(json.dumps), check_ari_event),
    Target("agi_reply", agi_lines, check_agi_reply),
    Target("agi_multiline_520", st.lists(agi_lines, max_size=12), check_agi_stream),
    Target("agi_environment", st.lists(
        st.text(max_size=60) | st.builds("agi_{}: {}".format, st.text(max_size=12),
                                         st.text(max_size=20)), max_size=10),
        check_agi_environment),
    Target("llm_sse_stream", st.tuples(
        st.lists(st.text(max_size=60) | chunks.map(lambda c: "data: " + json.dumps(c)),
                 max_size=8), st.booleans()), check_llm_stream),
    Target("tenant_file", tenant_docs, check_tenant_file),
)


def fuzz(target: Target, examples: int, *, seed: int | None = None) -> dict[str, Any]:
    """Run ``target`` for ``examples`` inputs; the counts and the shrunk failing input.

    Hypothesis stops at the first failure and shrinks it, so ``failures`` is 0
    or 1 per run; the input it reports is the smallest one that still fails.
    """
    tried = 0
    failing: list[Any] = []

    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(target.inputs)
    def run(value: Any) -> None:
        nonlocal tried
        tried += 1
        try:
            target.check(value)
        except BaseException:
            failing.append(value)
            raise

    if seed is not None:
        run = hypothesis_seed(seed)(run)
    started = time.perf_counter()
    error = None
    try:
        run()
    except Exception as exc:  # the failure is the result, reported, not raised
        error = f"{type(exc).__name__}: {exc}"
    return {"examples": tried, "failures": int(error is not None),
            "failing_input": repr(failing[-1]) if error and failing else None,
            "error": error, "seconds": time.perf_counter() - started}


def run(examples: int, only: list[str] | None = None, seed: int | None = None,
        progress: Callable[[str], None] = print,
        partial: Callable[[dict[str, Any]], object] = lambda result: None) -> dict[str, Any]:
    """Every target (or those named in ``only``); the ``fuzz.json`` record.

    ``partial`` gets the record after each parser (a long run is saved as it goes).
    """
    unknown = set(only or []) - {t.name for t in TARGETS}
    if unknown:
        raise ValueError(f"unknown parser(s) {sorted(unknown)}; "
                         f"known: {[t.name for t in TARGETS]}")
    result: dict[str, Any] = {"examples_per_parser": examples, "seed": seed, "parsers": {},
                              "failures": 0, "commit": _git_commit(), "machine": machine()}
    for target in TARGETS:
        if only and target.name not in only:
            continue
        date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        entry = fuzz(target, examples, seed=seed) | {"commit": result["commit"], "date": date}
        result["parsers"][target.name] = entry
        result["failures"] += entry["failures"]
        result["date"] = date
        progress(f"{target.name}: {entry['examples']} examples, {entry['failures']} failures "
                 f"({entry['seconds']:.0f} s)" + (f": {entry['error']}" if entry["error"] else ""))
        partial(result)
    return result


def save(result: dict[str, Any], results: Path = RESULTS) -> Path:
    """``fuzz.json`` (no plot: the figures are counts).

    A run of some parsers (``--parser``) at the same example count as the file
    already holds is merged into it, so one parser can be run again without
    losing the others; each entry keeps its own commit and date.
    """
    results.mkdir(parents=True, exist_ok=True)
    path = results / "fuzz.json"
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(path.read_text())
        if previous.get("examples_per_parser") == result["examples_per_parser"]:
            kept = {name: {"commit": previous.get("commit"), "date": previous.get("date")} | entry
                    for name, entry in previous["parsers"].items()}  # an older file's stamps
            parsers = {**kept, **result["parsers"]}
            result = result | {"parsers": parsers,
                               "failures": sum(e["failures"] for e in parsers.values())}
    path.write_text(json.dumps(result, indent=2))
    return path
