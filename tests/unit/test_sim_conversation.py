"""The scripted caller's measures that need no call: how much of a reply was heard."""

from __future__ import annotations

import numpy as np

from voice_agent.dev.sim.conversation import _speech_bounds, word_error_rate, words_heard
from voice_agent.dev.sim.signals import tone


def test_words_heard_tolerates_single_misheard_words_but_not_a_different_reply() -> None:
    reply = "Order 1 2 3 4 5, your AeroBook 14 laptop, has shipped and should arrive Thursday."
    misheard = "order 1-2-3-4-5. your arrow book 14 left-top. how should then should arrive"
    assert 0.5 <= words_heard(reply, misheard) < 1.0
    assert words_heard(reply, reply.upper()) == 1.0
    assert words_heard(reply, "Sorry, I didn't catch that.") < 0.2
    assert words_heard("", "anything") == 1.0


def test_speech_bounds_skip_the_clip_s_leading_and_trailing_silence() -> None:
    silence = np.zeros(8000, np.int16)  # 0.5 s
    clip = np.concatenate([silence, tone(440, 1.0), silence])
    first, last = _speech_bounds(clip)
    assert abs(first - 0.5) <= 0.02 and abs(last - 1.5) <= 0.02


def test_word_error_rate_counts_substitutions_insertions_and_deletions() -> None:
    said = "Order one two three has shipped."
    assert word_error_rate(said, "order one two three has shipped") == 0.0
    assert word_error_rate(said, "order one two tree has shipped") == 1 / 6  # substitution
    assert word_error_rate(said, "order one two three has") == 1 / 6  # deletion
    assert word_error_rate(said, "the order one two three has shipped") == 1 / 6  # insertion
    assert word_error_rate(said, "") == 1.0
    assert word_error_rate("", "noise") == 1.0 and word_error_rate("", "") == 0.0
