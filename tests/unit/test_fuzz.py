"""Every parser of outside input, fuzzed: it returns a value or raises our typed error.

Never an unhandled exception and never a hang (each example runs under
pytest-timeout). Strategies mix pure noise with near-valid inputs built from
the real formats, so the interesting paths (a header that almost parses, a
JSON chunk with one wrong type) are reached, not just the first length check.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice_agent.agi.protocol import (
    AgiError,
    ResponseParser,
    parse_environment,
    parse_response,
)
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


# ------------------------------------------------------------------------ RTP
@st.composite
def rtp_like(draw: st.DrawFn) -> bytes:
    """A header with any version, padding, extension and CSRC count, then any tail."""
    first = draw(st.integers(0, 255))
    second = draw(st.integers(0, 255))
    header = struct.pack("!BBHII", first, second, draw(st.integers(0, 0xFFFF)),
                         draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)))
    return header + draw(st.binary(max_size=200))


@given(st.binary(max_size=300) | rtp_like())
def test_rtp_packets(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpParseError as exc:
        assert str(exc)  # says why
        return
    assert 0 <= packet.payload_type < 128 and len(packet.payload) <= len(data)


# --------------------------------------------------------- chan_websocket control
@given(st.text(max_size=200) | st.lists(
    st.sampled_from(["MEDIA_START", "MEDIA_XOFF", "MEDIA_XON", "connection_id:x",
                     "format:slin16", "optimal_frame_size:640", ":", "a:b:c", " "]),
    max_size=6).map(" ".join))
def test_websocket_control_messages(message: str) -> None:
    try:
        command, fields = parse_control(message)
    except ValueError:
        return  # the transport logs and ignores it
    assert isinstance(command, str) and all(isinstance(v, str) for v in fields.values())


# ------------------------------------------------------------------------ AGI
agi_lines = st.text(max_size=80) | st.builds(
    "{} {}".format, st.sampled_from(["200", "510", "511", "520", "520-", "100", "2OO", ""]),
    st.text(max_size=40) | st.builds("result={}{}".format, st.text(max_size=5),
                                     st.text(max_size=20)))


@given(agi_lines)
def test_agi_replies(line: str) -> None:
    try:
        response = parse_response(line)
    except AgiError as exc:
        assert str(exc)
        return
    assert isinstance(response.code, int)


@given(st.lists(agi_lines, max_size=12))
def test_agi_reply_streams_including_multi_line_520(lines: list[str]) -> None:
    parser = ResponseParser()
    for line in ["520-Invalid command syntax.  Proper usage follows:", *lines,
                 "520 End of proper usage."]:
        try:
            parser.feed(line)
        except AgiError:
            pass


@given(st.lists(st.text(max_size=60) | st.builds("agi_{}: {}".format, st.text(max_size=12),
                                                 st.text(max_size=20)), max_size=10))
def test_agi_environments(lines: list[str]) -> None:
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


@settings(max_examples=400)
@given(st.lists(st.text(max_size=60) | chunks.map(lambda c: "data: " + json.dumps(c)),
                max_size=8), st.booleans())
def test_llm_stream_chunks(lines: list[str], done: bool) -> None:
    decoder = ChatStreamDecoder()
    try:
        for line in [*lines, "data: [DONE]"] if done else lines:
            decoder.feed(line)
        decoder.end_of_stream()
    except ProviderError as exc:
        assert str(exc)


# --------------------------------------------------------------- tenant files
tenant_docs = st.text(max_size=200) | json_values.map(json.dumps) | st.fixed_dictionaries(
    {"name": json_values, "display_name": json_values, "greeting_prompt": json_values},
    optional={"silence_ms": json_values, "providers": json_values}).map(json.dumps)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(tenant_docs)
def test_tenant_files(tmp_path: Path, document: str) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_text(document, encoding="utf-8")
    try:
        registry = TenantRegistry.load(tmp_path)
    except TenantFileError as exc:
        assert "fuzzed.yaml" in str(exc)  # names the file
        return
    assert all(tenant.name for tenant in registry)


def test_a_tool_call_with_arguments_that_are_not_text_is_a_provider_error() -> None:
    """Found by hand after the fuzzer missed it: the pieces were joined only at [DONE]."""
    decoder = ChatStreamDecoder()
    with pytest.raises(ProviderError, match="arguments is int"):
        decoder.feed("data: " + json.dumps({"choices": [{"delta": {"tool_calls": [
            {"function": {"name": "order_status", "arguments": 5}}]}}]}))


def test_a_broken_tenant_file_is_named_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text("name: acme\ndisplay_name: [unclosed\n")
    with pytest.raises(TenantFileError, match=r"acme\.yaml.*"):
        TenantRegistry.load(tmp_path)
