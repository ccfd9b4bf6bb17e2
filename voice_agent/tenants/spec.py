"""What a tenant's intents, slots, actions and example conversations look like as data.

A business is described by files (see ``docs/tenants.md``): who it is in
``tenant.yaml``, what callers can ask for in ``intents.yaml``, its tables and
seed rows in ``data.sql``, and example conversations in ``conversations.yaml``.
These pydantic models are the schema of those files; the rule engine
(:mod:`voice_agent.dialog.rules`) interprets them and ``voice-agent tenants
check`` validates them. Templates are Jinja2 strings rendered in a sandbox;
conditions are Jinja2 expressions; SQL names its values as ``:slot`` or
``:result.column``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SlotType = Literal["digits", "date", "time", "choice", "yes_no", "text"]
#: Names the engine binds in every template and query besides slots and results.
BUILTIN_NAMES = frozenset({"caller", "today", "tenant", "choices"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Outcome(_Strict):
    """What the agent says when a check fails or a lookup finds nothing, and what next."""

    say: str = Field(description="Template spoken to the caller.")
    ask: str | None = Field(None, description="Forget this slot and wait for it again; "
                            "'any' waits for a change to any slot. Unset: the task ends.")


class Choices(_Strict):
    """Where a ``choice`` slot's options come from: rows of the tenant's database."""

    sql: str = Field(description="SELECT returning the options, in the order they are read out.")
    key: str = Field(description="Column whose value stands for the row in queries.")
    match: list[str] = Field(min_length=1, description="Columns whose words name the row "
                             "when the caller says them ('post code' matches 'Postcode').")
    by_position: bool = Field(False, description="Also take 'the second one', 'the last' or "
                              "a key press, when this slot was asked for.")


class Slot(_Strict):
    """One piece of information an intent needs from the caller."""

    type: SlotType
    ask: str = Field("", description="Template: the question that asks for this slot.")
    required: bool = True
    min_length: int = Field(1, ge=1, description="digits: fewest digits that make a value; "
                            "the turn ends as soon as this many were said.")
    max_length: int | None = Field(None, ge=1, description="digits: most digits.")
    near: str | None = Field(None, description="digits: a regular expression that must come "
                             "right before or after the number ('people|guests', 'for') "
                             "unless the slot was just asked for; for small counts that "
                             "a time or a date in the same sentence would otherwise fill.")
    choices: Choices | None = None
    default: str | None = Field(None, description="Jinja expression giving the value when "
                                "the intent starts (e.g. from a lookup result).")
    description: str = Field("", description="What the slot means, for an LLM tool.")

    @model_validator(mode="after")
    def _choices_for_choice(self) -> Slot:
        if (self.type == "choice") != (self.choices is not None):
            raise ValueError("a slot has 'choices' exactly when its type is 'choice'")
        if self.required and not self.ask and self.default is None:
            raise ValueError("a required slot needs 'ask' (or a 'default')")
        return self


class Check(_Strict):
    """A business rule: an SQL query that must (or must not) find a row, or a condition."""

    require: str | None = Field(None, description="SELECT that must return a row.")
    refuse: str | None = Field(None, description="SELECT that must return no row.")
    when: str | None = Field(None, description="Jinja expression: the check fails when true.")
    fail: Outcome

    @model_validator(mode="after")
    def _one_rule(self) -> Check:
        if sum(x is not None for x in (self.require, self.refuse, self.when)) != 1:
            raise ValueError("a check has exactly one of 'require', 'refuse' or 'when'")
        return self


class Webhook(_Strict):
    """An HTTP call to the business's own system."""

    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    timeout: float = Field(5.0, gt=0, le=30)
    failure: str = Field(description="Template spoken when the call fails or times out.")


class Step(_Strict):
    """One step of a lookup or an action: a query, an update or a webhook."""

    tool: str | None = Field(None, description="Name recorded in the call's trace "
                             "(default: the intent's name).")
    sql: str | None = Field(None, description="One SQL statement; a SELECT binds its row "
                            "(or rows, with 'many') to 'as'.")
    webhook: Webhook | None = None
    as_: str | None = Field(None, alias="as", description="Name of the result in templates.")
    many: bool = False
    not_found: Outcome | None = Field(None, description="A SELECT with no row, or a change "
                                      "that touched no row.")

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if (self.sql is None) == (self.webhook is None):
            raise ValueError("a step has exactly one of 'sql' or 'webhook'")
        return self

    @property
    def changes_data(self) -> bool:
        return self.webhook is not None or not _is_select(self.sql or "")


def _is_select(sql: str) -> bool:
    return sql.lstrip().split(None, 1)[:1] in (["SELECT"], ["select"], ["WITH"], ["with"])


class Intent(_Strict):
    """A task a caller can ask for."""

    description: str = Field("", description="What the task does, for an LLM tool.")
    examples: list[str] = Field(default_factory=list, description="Caller phrases.")
    match: list[str] = Field(default_factory=list, description="Regular expressions over "
                             "the normalised words (lowercase, digits); any one starts the "
                             "intent. Intents are tried in file order.")
    match_last: list[str] = Field(default_factory=list, description="Tried after every "
                                  "intent's 'match'.")
    when_heard: list[str] = Field(default_factory=list, description="Slots whose value in "
                                  "the words starts this intent (tried with match_last).")
    lookup: list[Step] = Field(default_factory=list, description="Runs when the intent "
                               "starts, before any question (e.g. the caller's booking).")
    intro: str = Field("", description="Template said before the first question.")
    slots: dict[str, Slot] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list, description="Run once every slot is "
                                "filled, before confirming, and again inside the action.")
    confirm: str | None = Field(None, description="Template: the yes/no question asked "
                                "before the action. Required when the action changes data.")
    on_no: Outcome = Field(default_factory=lambda: Outcome(say="Okay, I won't do that. "
                                                           "Anything else?"))
    action: list[Step] = Field(default_factory=list)
    reply: str = Field("", description="Template spoken when the task is done.")

    @property
    def changes_data(self) -> bool:
        return any(step.changes_data for step in self.action)


class Emergency(_Strict):
    """Phrases that mean danger; the screen runs before any other reading of the words."""

    phrases: list[str] = Field(min_length=1, description="Regular expressions over the "
                               "normalised words.")
    say: str


class Hours(_Strict):
    """When people are there to take a transfer."""

    timezone: str = "UTC"
    open: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], str] = Field(
        description="Day → 'HH:MM-HH:MM'.")
    closed: str = Field(description="Said instead of transferring outside these hours.")


class ConversationStep(_Strict):
    """One caller turn of an example conversation."""

    say: str = ""
    then: str = Field("", description="Said after a pause longer than the end-of-turn "
                      "silence: a caller who pauses mid-sentence.")
    dtmf: str = ""
    expect: str = Field("", description="Words the agent's answer must contain.")

    @field_validator("say", "then", "dtmf", "expect", mode="before")
    @classmethod
    def _quoted(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("YAML read this as true/false: put it in quotes, "
                             "e.g. say: \"yes\"")
        return value


class ConversationOutcome(_Strict):
    """What must be true after an example conversation."""

    description: str
    reply_has: str = Field("", description="Words the last answer must contain.")
    sql: str = Field("", description="SELECT on the tenant's database (:caller bound) that "
                     "must return a row.")


class Conversation(_Strict):
    """An example conversation: documentation, a test, and what the demo and benchmarks say."""

    name: str
    number: str | None = Field(None, description="The number a call dials for it "
                               "(default: the tenant's first).")
    caller: str = "+15550123"
    today: str | None = Field(None, description="ISO date the text run pretends is today.")
    use: list[Literal["demo", "latency", "paused", "barge_in", "load"]] = Field(
        default_factory=list, description="Where else it is said: the demo, bench latency "
        "(each step a question), paused (a mid-sentence pause probe), barge_in (step 2 "
        "interrupts step 1's long answer), load (step 1 is every load call's question).")
    steps: list[ConversationStep] = Field(min_length=1)
    outcome: ConversationOutcome | None = None
