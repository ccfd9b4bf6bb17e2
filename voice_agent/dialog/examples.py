"""A tenant's example conversations, rehearsed in text through the rule engine.

The examples in ``conversations.yaml`` document a tenant, and they are also
what the demo and the benchmarks say on real calls. Rehearsing them in text
(no audio, a scratch copy of the tenant's data) proves in milliseconds that an
edit to the intents did not break a task; ``voice-agent tenants check`` and the
unit tests do it for every tenant. :func:`outcome_holds` is the one judgement
of "the task was done", shared with the demo's real calls.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.state import DialogState
from voice_agent.tenants import Tenant
from voice_agent.tenants.data import TenantDatabases, TenantDB, bind
from voice_agent.tenants.spec import Conversation, ConversationOutcome, ConversationStep


def spoken(step: ConversationStep) -> str:
    """What the caller says (or keys) in one step, the pause left out."""
    return step.dtmf or " ".join(part for part in (step.say, step.then) if part)


def outcome_holds(outcome: ConversationOutcome, db: TenantDB, caller: str,
                  last_reply: str) -> bool:
    """Whether ``outcome`` is true: the last reply holds its words, its query finds a row."""
    if outcome.reply_has and outcome.reply_has.lower() not in last_reply.lower():
        return False
    if outcome.sql:
        sql, params = bind(outcome.sql, {"caller": caller})
        with db.transaction() as conn:
            return conn.execute(sql, params).fetchone() is not None
    return True


class Scratch(TenantDatabases):
    """A fresh in-memory copy of the tenant's data for each rehearsal (no files, no fsync)."""

    def of(self, tenant: str, data_sql: str = "") -> TenantDB:
        return TenantDB(Path(":memory:"), data_sql)


def rehearse(tenant: Tenant, conversation: Conversation) -> list[str]:
    """Play ``conversation`` to the rule engine on fresh data; what went wrong, if anything."""
    today = date.fromisoformat(conversation.today) if conversation.today else date.today()
    engine = DialogEngine(tenant, Scratch(), today=lambda: today, log_turns=False)
    state = DialogState(caller_id=conversation.caller)
    engine.greet(state)
    problems, reply = [], ""
    try:
        for number, step in enumerate(conversation.steps, 1):
            reply = engine.reply(state, spoken(step)).text
            if step.expect and step.expect.lower() not in reply.lower():
                problems.append(f"step {number} ({spoken(step)!r}): the agent said "
                                f"{reply!r}, without {step.expect!r}")
        outcome = conversation.outcome
        if outcome and not outcome_holds(outcome, engine.db, conversation.caller, reply):
            problems.append(f"outcome not true afterwards: {outcome.description}")
    finally:
        engine.db.close()
    return problems
