"""Every parser of outside input, fuzzed: it returns a value or raises our typed error.

The targets live in :mod:`voice_agent.dev.bench.fuzz` (``bench fuzz`` runs them
long); here each runs the bounded CI profile. Never an unhandled exception and
never a hang (each target runs under pytest-timeout).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voice_agent.dev.bench import fuzz
from voice_agent.providers.errors import ProviderError
from voice_agent.providers.llm import ChatStreamDecoder
from voice_agent.tenants import TenantFileError, TenantRegistry

#: The CI profile: examples per parser (the issue asks for about 1 000).
CI_EXAMPLES = {"tenant_file": 300}  # writes a file per example; the rest are in-memory
DEFAULT_EXAMPLES = 1000


@pytest.mark.parametrize("target", fuzz.TARGETS, ids=lambda t: t.name)
def test_parser_survives_fuzzing(target: fuzz.Target) -> None:
    result = fuzz.fuzz(target, CI_EXAMPLES.get(target.name, DEFAULT_EXAMPLES))
    assert result["failures"] == 0, f"{result['error']} on input {result['failing_input']}"
    assert result["examples"] > 0


def test_a_parser_that_breaks_is_reported_with_its_smallest_input() -> None:
    """The runner itself: a failing check is counted and shrunk, not raised."""
    def check(data: bytes) -> None:
        if len(data) > 3:
            raise KeyError("boom")

    result = fuzz.fuzz(fuzz.Target("broken", fuzz.rtp_like(), check), 200)
    assert result["failures"] == 1 and "KeyError" in result["error"]
    assert result["failing_input"] == repr(bytes(12))  # shrunk to the smallest header


def test_unknown_parser_names_are_refused() -> None:
    with pytest.raises(ValueError, match="known"):
        fuzz.run(10, only=["nope"])


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


def test_a_run_of_some_parsers_is_merged_into_the_file_of_the_same_count(tmp_path: Path) -> None:
    quiet = {"progress": lambda message: None}
    fuzz.save(fuzz.run(20, ["rtp", "agi_reply"], seed=1, **quiet), tmp_path)
    fuzz.save(fuzz.run(20, ["agi_reply", "ari_event"], seed=2, **quiet), tmp_path)
    merged = json.loads((tmp_path / "fuzz.json").read_text())
    assert set(merged["parsers"]) == {"rtp", "agi_reply", "ari_event"}
    assert merged["parsers"]["agi_reply"]["examples"] == 20 and merged["seed"] == 2
    assert merged["parsers"]["rtp"]["commit"] == merged["commit"]  # each entry keeps its own
    fuzz.save(fuzz.run(10, ["ari_event"], **quiet), tmp_path)  # another count: a new file
    assert set(json.loads((tmp_path / "fuzz.json").read_text())["parsers"]) == {"ari_event"}
