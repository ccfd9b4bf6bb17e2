"""SentenceChunker: early first clause, sentence ends, long sentences, lossless output.

Most cases are checked twice, with the text fed whole and one character at a
time, because a streamed reply can be cut anywhere and the chunks must not
depend on where.
"""

from __future__ import annotations

import re

import pytest

from voice_agent.dialog.chunker import SentenceChunker


def chunk_all(deltas: list[str], chunker: SentenceChunker | None = None) -> list[str]:
    chunker = chunker or SentenceChunker()
    chunks = [chunk for delta in deltas for chunk in chunker.feed(delta)]
    return chunks + chunker.flush()


def both_ways(text: str) -> list[str]:
    """The chunks of ``text``, asserting they are the same fed whole and char by char."""
    whole = chunk_all([text])
    assert chunk_all(list(text)) == whole
    return whole


def without_whitespace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_first_clause_is_emitted_as_soon_as_its_boundary_is_confirmed() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Sure, I can check that order for you,") == []  # "," may be "1,000"
    assert chunker.feed(" one") == ["Sure, I can check that order for you,"]
    assert chunker.feed(" moment") == []


def test_short_opening_clause_waits_for_more_text() -> None:
    assert both_ways("Sure, let me look that up for you, it takes a second. Thanks.") == [
        "Sure, let me look that up for you,",
        "it takes a second.",
        "Thanks.",
    ]


def test_only_the_first_chunk_is_cut_at_a_clause() -> None:
    text = "Yes, your order shipped on Monday, and it arrives Thursday, before noon. Anything else?"
    assert both_ways(text) == [
        "Yes, your order shipped on Monday,",
        "and it arrives Thursday, before noon.",
        "Anything else?",
    ]


def test_short_sentences_are_emitted_whole() -> None:
    assert both_ways("Hi! How are you? Good.") == ["Hi!", "How are you?", "Good."]


@pytest.mark.parametrize(
    "text",
    [
        "The total is 3.5 dollars and 1,250 points today.",
        "Dr. Smith and Mr. Jones will call, e.g. tomorrow at 9 a.m. sharp.",
        "Send it to J. R. Tolkien in the U.S. office now.",
        "Version 2.0.1 is out now.",
    ],
)
def test_decimals_and_abbreviations_do_not_end_a_sentence(text: str) -> None:
    chunks = both_ways(text)
    assert all(chunk.endswith((".", ",")) for chunk in chunks)
    assert [c for c in chunks if not c.endswith(",")] == [chunks[-1]]  # one sentence


def test_abbreviation_keeps_the_sentence_whole() -> None:
    assert both_ways("Hello. Dr. Smith is in today. Bye.") == [
        "Hello.", "Dr. Smith is in today.", "Bye."
    ]


def test_sentence_end_needs_the_next_character() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("It costs 3.") == []
    assert chunker.feed("5 dollars.") == []
    assert chunker.feed(" Okay") == ["It costs 3.5 dollars."]
    assert chunker.flush() == ["Okay"]


def test_long_sentence_is_cut_at_a_clause_boundary_before_max_chars() -> None:
    text = (
        "Hello. "
        "Your plan includes unlimited calls to every number in the country, "
        "twenty gigabytes of data at full speed, free roaming in thirty countries, "
        "and a new phone every two years."
    )
    chunks = both_ways(text)
    assert chunks[0] == "Hello."
    assert chunks[1].endswith("full speed,")
    assert len(chunks[1]) <= 120
    assert chunks[2] == "free roaming in thirty countries, and a new phone every two years."


def test_long_sentence_without_a_boundary_before_max_chars_cuts_at_the_next_one() -> None:
    clause = "word " * 30
    text = f"Ok. {clause.strip()}, and the rest."
    assert both_ways(text) == ["Ok.", f"{clause.strip()},", "and the rest."]


def test_dashes_are_clause_boundaries() -> None:
    assert both_ways("Let me think about that one — yes, it works.") == [
        "Let me think about that one —", "yes, it works."
    ]
    assert both_ways("Let me think about that one—yes it does.") == [
        "Let me think about that one—", "yes it does."
    ]
    assert both_ways("From 10-20 or maybe 30 people - that is fine.") == [
        "From 10-20 or maybe 30 people -", "that is fine."
    ]


def test_whitespace_is_normalised() -> None:
    assert both_ways("  Hello\n\nthere.   How\tare  you?  ") == ["Hello there.", "How are you?"]


def test_flush_returns_the_rest_and_resets_for_the_next_reply() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Done. And then") == ["Done."]
    assert chunker.flush() == ["And then"]
    assert chunker.flush() == []
    # A new reply: its first chunk may again be cut at an early clause.
    assert chunker.feed("Well, that is a good question, ") == ["Well, that is a good question,"]


@pytest.mark.parametrize("deltas", [[], [""], ["   ", "\n"]])
def test_empty_input_gives_no_chunks(deltas: list[str]) -> None:
    assert chunk_all(deltas) == []


def test_bare_punctuation_is_never_a_chunk() -> None:
    assert both_ways("... Well. !") == ["... Well.", "!"]


@pytest.mark.parametrize(
    "text",
    [
        "Sure, I can help. Your order number is 4.2, right? Dr. Lee said so; fine.",
        "One: two; three — four, five. " * 12,
        "A very long sentence with no punctuation at all " * 5,
        "Mr. X. Y. Z. Q. e.g. i.e. etc. 3.14159 is pi! Really?! Yes...",
    ],
)
def test_chunks_reassemble_to_the_original(text: str) -> None:
    for deltas in ([text], list(text), re.findall(r"\S+|\s+", text)):
        chunks = chunk_all(deltas)
        assert all(chunk and chunk == chunk.strip() for chunk in chunks)
        assert without_whitespace("".join(chunks)) == without_whitespace(text)
