"""Is the caller done? What the words say about the end of a turn.

The endpointer ends a turn after a fixed silence (≈ 0.57 s), the largest part
of the agent's answer time. The words already transcribed after the first
200 ms of that silence often settle the question sooner: "yes" to a
confirmation is a whole answer, "where is my order one two three four five"
names a task and its number, while "my order number is one two" or "I'd like
to book for" is plainly unfinished. :func:`turn_end` reads a speculative
transcript against the dialog state and says which:

* ``COMPLETE``: end the turn now;
* ``INCOMPLETE``: the caller is mid-sentence: wait longer than the fixed silence;
* ``UNSURE``: keep the fixed silence.

Rules (a complete reading wins only when nothing marks the text unfinished):

1. Text that ends on a word that cannot end a sentence (a conjunction, a
   preposition, an article, "my", "is", a filler such as "um") is INCOMPLETE.
2. While a number is awaited, or the text asks about an order with digits in
   it, a digit string shorter than ``number_length`` is INCOMPLETE and one of
   that length is COMPLETE.
3. A clear yes or no to a pending confirmation is COMPLETE.
4. A recognised request (the shared ones — repeat, operator, goodbye — or one
   of the tenant's intents) is COMPLETE.
5. Anything else is UNSURE.

Pure and fast (regular expressions over a normalised transcript), so the
conversation runs it inline when the speculative transcript arrives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
    i im id ill we were please um uh er erm hmm mm
    number order appointment course
""".split())
#: Slots whose answer is a number said digit by digit.
_NUMBER_SLOTS = frozenset({"order_number"})


def turn_end(state: DialogState, norm: str, intent_of: Callable[[str], str | None],
             *, number_length: int = 5) -> TurnEnd:
    """What a normalised transcript says about whether the caller's turn is over."""
    words = norm.split()
    if not words:
        return TurnEnd.UNSURE
    digits = digit_run(norm, min_len=1)
    wants_number = state.awaiting in _NUMBER_SLOTS or (
        digits is not None and intent_of(norm) == "order_status")
    if wants_number and digits is not None:
        # Homophones ("to", "for") may end a digit string, so rule 1 waits for this.
        return TurnEnd.COMPLETE if len(digits) >= number_length else TurnEnd.INCOMPLETE
    if words[-1] in _DANGLING:
        return TurnEnd.INCOMPLETE
    if state.awaiting == "confirm" and any(yes_or_no(norm)):
        return TurnEnd.COMPLETE
    if wants_number:
        return TurnEnd.UNSURE  # a number was asked for and none came yet
    if intent_of(norm) is not None:
        return TurnEnd.COMPLETE
    return TurnEnd.UNSURE


_SHARED = re.compile(r"\b(repeat|say that again|operator|real person|representative|"
                     r"goodbye|bye|thats all|thank you|thanks)\b")


def shared_intent(norm: str) -> str | None:
    """The requests every tenant understands, as far as ending a turn goes."""
    return "shared" if _SHARED.search(norm) else None
