"""Streamed reply text → speakable chunks, the first one as early as possible.

The caller hears nothing until TTS has its first piece of text, and an LLM
streams a sentence over hundreds of milliseconds. So :class:`SentenceChunker`
hands out text at the earliest point where speech still sounds natural:

- at every sentence end (``.`` ``!`` ``?`` ``…``);
- for the *first* chunk of a reply, also at a clause boundary (``,`` ``;``
  ``:`` or a dash) once it is at least ~20 characters long: "Sure, let me
  check that order for you," is spoken while the rest is still being
  generated, and shorter openers ("Sure,") are kept whole, since a clipped
  syllable costs a model call and sounds wrong;
- for later chunks, at a clause boundary only when a sentence runs past ~120
  characters: by then playback is ahead of us, and whole sentences keep their
  intonation.

A boundary only counts once the character after it has arrived: "3." may yet
become "3.5", and a whitespace after the period is what proves it ends a
sentence. That lookahead costs one token at most, and it makes the output
independent of how the stream happens to be cut into deltas (the tests feed the
same text whole and character by character and expect the same chunks).

Periods after common abbreviations ("Dr.", "Mr.", "e.g.", "U.S.") and
initials ("J.") are not sentence ends; like every heuristic this errs on
the side of a longer chunk, which costs latency, never wrong speech.

Pure and synchronous: no I/O, no clock. :func:`voice_agent.providers.tts.split_for_speech`
does the same job for a text that is known in full.
"""

from __future__ import annotations

import re

_CLOSERS = "\"')]”’"  # may follow the punctuation that ends a sentence or clause
_CLOSE = f"[{re.escape(_CLOSERS)}]*"
# Every boundary ends with a lookahead, so it is only found once the next character is there.
_SENTENCE_END = re.compile(rf"[.!?…]+{_CLOSE}(?=\s)")
# A spaced hyphen or en dash is a dash ("Sure - I can"); unspaced it joins words or numbers
# ("10-20"). An em dash is a dash either way.
_CLAUSE_END = re.compile(rf"(?:[,;:]|\s[-–]|—){_CLOSE}(?=\s)|—(?=\S)")
_WHITESPACE = re.compile(r"\s+")
_WORD_CHAR = re.compile(r"\w")
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # "e.g", "U.S", "a.m" (the final "." matched)
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "approx", "dept", "fig"}
)


class SentenceChunker:
    """Feed text deltas with :meth:`feed`, end the reply with :meth:`flush`.

    Chunks have their whitespace collapsed to single spaces and are never
    empty. Joined with spaces, the chunks of a reply are its text (modulo
    whitespace). After :meth:`flush` the chunker is ready for the next reply.
    """

    def __init__(self, *, first_clause_min_chars: int = 20, max_chars: int = 120) -> None:
        self.first_clause_min_chars = first_clause_min_chars
        self.max_chars = max_chars
        self._buffer = ""
        self._first = True

    def feed(self, text: str) -> list[str]:
        """The chunks that ``text`` completes (often none)."""
        self._buffer = _WHITESPACE.sub(" ", self._buffer + text).lstrip()
        chunks = []
        while (cut := self._next_cut()) is not None:
            chunks.append(self._buffer[:cut].strip())
            self._buffer = self._buffer[cut:].lstrip()
            self._first = False
        return chunks

    def flush(self) -> list[str]:
        """The rest of the reply as a last chunk (none if only whitespace is left)."""
        rest = self._buffer.strip()
        self._buffer = ""
        self._first = True
        return [rest] if rest else []

    def _next_cut(self) -> int | None:
        """Where the next chunk ends in the buffer, or None to wait for more text.

        Among the boundaries present, the one that streaming char by char
        would reach first: a sentence end as soon as it is seen, a long
        sentence's clause boundary once the buffer overflows ``max_chars``.
        """
        text = self._buffer
        sentences = _cuts(text, _SENTENCE_END)
        sentence = sentences[0] if sentences else None
        clauses = _cuts(text, _CLAUSE_END)
        if self._first:
            early = [cut for cut in clauses if cut >= self.first_clause_min_chars]
            return _earliest(sentence, early[0] if early else None)
        if sentence is not None and sentence <= self.max_chars:
            return sentence
        if len(text) <= self.max_chars:
            return None
        within = [cut for cut in clauses if cut <= self.max_chars]
        if within:  # the longest piece that still fits
            return within[-1]
        return _earliest(sentence, clauses[0] if clauses else None)


def _cuts(text: str, boundary: re.Pattern[str]) -> list[int]:
    """End offsets of the ``boundary`` matches in ``text`` that may end a chunk.

    A piece must contain a word character (no chunk of bare punctuation), and
    a period after an abbreviation does not end anything.
    """
    return [
        match.end()
        for match in boundary.finditer(text)
        if _WORD_CHAR.search(text, 0, match.start()) and not _after_abbreviation(text, match)
    ]


def _after_abbreviation(text: str, match: re.Match[str]) -> bool:
    if match.group().rstrip(_CLOSERS) != ".":
        return False
    word = text[: match.start()].rsplit(maxsplit=1)[-1].lstrip("\"'([“‘")
    return (
        word.lower() in _ABBREVIATIONS
        or _DOTTED.fullmatch(word) is not None
        or (len(word) == 1 and word.isupper() and word != "I")  # an initial, "J. Smith"
    )


def _earliest(*cuts: int | None) -> int | None:
    present = [cut for cut in cuts if cut is not None]
    return min(present) if present else None
