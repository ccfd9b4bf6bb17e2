"""Is the caller done? What the words say about the end of a turn.

The endpointer ends a turn after a fixed silence (≈ 0.57 s), the largest part
of the agent's answer time. The words already transcribed after the first
200 ms of that silence often settle the question sooner: "yes" to a
confirmation is a whole answer, "where is number one two three four five"
names a task and its number, while "my number is one two" or "I'd like to
book for" is plainly unfinished. :func:`turn_end` reads a speculative
transcript against the dialog state and says which:

* ``COMPLETE``: end the turn now;
* ``INCOMPLETE``: the caller is mid-sentence: wait longer than the fixed silence;
* ``UNSURE``: keep the fixed silence.

Rules (a complete reading wins only when nothing marks the text unfinished):

1. Text that ends on a word that cannot end a sentence (a conjunction, a
   preposition, an article, "my", "is", a filler such as "um") is INCOMPLETE.
2. While a number is awaited, or the request needs one (a ``digits`` slot of
   the intent, such as a reference number), the turn is COMPLETE once a digit
   string of ``number_length`` was said and INCOMPLETE until then.
3. A clear yes or no to a pending confirmation is COMPLETE.
4. A recognised request (``intent``: the engine's shared ones, such as repeat,
   operator, goodbye, and the tenant's intents) is COMPLETE.
5. Anything else is UNSURE.

Pure and fast (regular expressions over a normalised transcript), so the
conversation runs it inline when the speculative transcript arrives.
"""

from __future__ import annotations

from enum import Enum

from voice_agent.dialog.state import DialogState, yes_or_no
from voice_agent.dialog.text import digit_run


class TurnEnd(Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNSURE = "unsure"


#: Words a finished sentence does not end on.
_DANGLING = frozenset("""
    and or but so because if whether then than that which who when where while
    at for to on in with from of about into by as like
    a an the my your our their his her its this these those some any
    is are was were am be been being do does did have has had will would can could should
    i im id ill we were um uh er erm hmm mm
    number order
""".split())
# "order" and "number": "where is my order", "my number" are followed by the number
# more often than not. Other nouns end a request ("I'd like to register for a class"),
# so they are not here (bench latency: 0.7 s wasted on each).


def turn_end(state: DialogState, norm: str, intent: str | None,
             *, number_length: int | None = None) -> TurnEnd:
    """What a normalised transcript says about whether the caller's turn is over.

    ``intent``: the request the words make (the engine's shared ones, the emergency
    screen, the tenant's intents), or ``None``. ``number_length``: the digits a
    number the caller owes has (an awaited ``digits`` slot, or one the request
    needs), or ``None`` when none is owed.
    """
    words = norm.split()
    if not words:
        return TurnEnd.UNSURE
    digits = digit_run(norm, min_len=1)
    if number_length is not None:
        # A number is asked for, or the request needs one: the turn is over once a
        # whole one was said ("where is my order" then a pause: the number follows).
        # Homophones ("to", "for") may end a digit string, so rule 1 waits for this.
        if digits is not None and len(digits) >= number_length:
            return TurnEnd.COMPLETE
        return TurnEnd.INCOMPLETE
    if words[-1] in _DANGLING:
        return TurnEnd.INCOMPLETE
    if state.awaiting == "confirm" and any(yes_or_no(norm)):
        return TurnEnd.COMPLETE
    if intent is not None:
        return TurnEnd.COMPLETE
    return TurnEnd.UNSURE

