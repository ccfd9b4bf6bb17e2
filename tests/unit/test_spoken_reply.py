"""What the caller heard of a cut reply, and how loud the agent is at each frame."""

from __future__ import annotations

import numpy as np
import pytest

from voice_agent.conversation.spoken_reply import SpokenReply, heard_words
from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.state import DialogState, Turn
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.data import TenantDatabases

FIRST = "You can return most items within 30 days,"  # 50 frames
SECOND = "as long as they are in their original packaging."  # 100 frames


def reply() -> SpokenReply:
    spoken = SpokenReply()
    for text, frames, amplitude in ((FIRST, 50, 1000), (SECOND, 100, 4000)):
        spoken.start_clause(text)
        spoken.wrote(np.full(frames * 320, amplitude, np.int16), frames)
    return spoken


@pytest.mark.parametrize(
    ("played", "heard"),
    [(0, ""),
     (1, ""),  # not even the first word was over
     (25, "You can return most"),  # half the clause: words ending in its first 21 characters
     (50, FIRST),
     (100, f"{FIRST} as long as they are in"),
     (150, f"{FIRST} {SECOND}"),
     (400, f"{FIRST} {SECOND}")],
)
def test_heard_is_whole_clauses_then_whole_words(played: int, heard: str) -> None:
    assert reply().heard(played) == heard


def test_a_half_heard_word_is_not_heard() -> None:
    assert heard_words("one two three", 0.5) == "one"  # "two" ends past 6.5 characters
    assert heard_words("one two three", 1.0) == "one two three"


def test_level_is_the_clause_playing() -> None:
    spoken = reply()
    assert spoken.level_at(10) == pytest.approx(20 * np.log10(1000 / 32768))
    assert spoken.level_at(60) == pytest.approx(20 * np.log10(4000 / 32768))
    assert spoken.level_at(999) == spoken.level_at(60)  # the padding after the end
    assert SpokenReply().level_at(0) is None


def test_history_keeps_the_played_part_and_repeat_says_it_all(tmp_path) -> None:
    engine = DialogEngine(TenantRegistry.load().resolve(["techstore"]),
                          TenantDatabases(tmp_path))
    state = DialogState()
    engine.greet(state)
    full = engine.reply(state, "what is your return policy").text
    state.cut_last_reply("You can return most items")
    assert state.history[-1] == Turn("agent", "You can return most items", interrupted=True)
    assert state.history[-2] == Turn("caller", "what is your return policy")
    assert engine.reply(state, "#").text == full
