"""A tenant's intents, run from its files: the rule engine's per-tenant part.

This is the product's core, so it is written here rather than taken from a
framework: a small interpreter over :mod:`voice_agent.tenants.spec`. One task
runs as

1. **start** (:meth:`Rules.respond`): the intent's ``lookup`` steps (the
   caller's booking, say), slot defaults, then every slot the words already
   give;
2. **next step**: ask for the first missing required slot; once all are
   there, run the ``checks`` (closed that day, no seats left) and, on a
   failure, say why and ask again; then ask ``confirm`` when the action
   changes data, or act at once;
3. **resume** (:meth:`Rules.resume`): each later turn fills slots first (a
   correction re-confirms), then reads yes or no to a pending confirmation;
4. **act** (:meth:`Rules.act`): the checks again and the steps, in order, in
   one transaction (so two callers cannot take one slot, and a failed webhook
   leaves no half-done change), then the ``reply`` template.

The same :meth:`Rules.act` serves an LLM's function call
(:mod:`voice_agent.dialog.tools`), so neither path can do what the other
would refuse.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

import httpx

from voice_agent.dialog.slots import Choice, answers_only_itself, coerce, parse
from voice_agent.dialog.state import DialogState, TurnContext, yes_or_no
from voice_agent.dialog.templates import evaluate, render
from voice_agent.tenants import Tenant
from voice_agent.tenants.data import TenantDB, bind, sql_names, sql_value
from voice_agent.tenants.spec import BUILTIN_NAMES, Check, Intent, Outcome, Slot, Step

log = logging.getLogger(__name__)

#: ``awaiting`` while the caller is asked what to change after a "no".
CHANGE = "change"
#: ``awaiting`` while a yes or no to the confirmation question is expected.
CONFIRM = "confirm"


class Refusal(Exception):
    """A check failed or a step found nothing: what to say, and what to wait for."""

    def __init__(self, outcome: Outcome, values: Mapping[str, Any]) -> None:
        super().__init__(outcome.say)
        self.outcome, self.values = outcome, values

    def __str__(self) -> str:
        return render(self.outcome.say, self.values)


def phrases(alternatives: list[str]) -> re.Pattern[str] | None:
    """Regular expressions from a tenant file as one word-bounded pattern (``None``: none)."""
    if not alternatives:
        return None
    return re.compile(r"\b(?:" + "|".join(f"(?:{a})" for a in alternatives) + r")\b")


class _Choices(Mapping[str, list[Choice]]):
    """``choices.<slot>`` in templates: a choice slot's options, queried when read."""

    def __init__(self, rules: Rules, intent: Intent, values: Mapping[str, Any]) -> None:
        self._rules, self._intent, self._values = rules, intent, values

    def __getitem__(self, name: str) -> list[Choice]:
        slot = self._intent.slots[name]
        assert slot.choices is not None
        return [Choice(row, slot.choices.key) for row in self._rules.options(slot, self._values)]

    def __iter__(self) -> Iterator[str]:
        return (n for n, s in self._intent.slots.items() if s.type == "choice")

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Rules:
    """One tenant's intents over its database; per-call state is the :class:`DialogState`."""

    def __init__(self, tenant: Tenant, db: TenantDB,
                 http: httpx.Client | None = None) -> None:
        self.tenant, self.db = tenant, db
        self.intents = tenant.intents
        self._http = http
        self._first = [(name, p) for name, i in self.intents.items()
                       if (p := phrases(i.match)) is not None]
        self._last = [(name, phrases(i.match_last), i.when_heard)
                      for name, i in self.intents.items() if i.match_last or i.when_heard]

    # --- reading the words ---------------------------------------------------------

    def intent_of(self, norm: str, today: date) -> str | None:
        """The task the words ask for: every intent's ``match`` first, in file order,
        then ``match_last`` and ``when_heard``."""
        for name, pattern in self._first:
            if pattern.search(norm):
                return name
        for name, pattern, heard in self._last:
            if pattern is not None and pattern.search(norm):
                return name
            intent = self.intents[name]
            values = self.values(intent, DialogState(), today)
            if any(self._parse(intent.slots[s], s, norm, "", today, None, values) is not None
                   for s in heard):
                return name
        return None

    def number_wanted(self, state: DialogState, intent: str | None) -> int | None:
        """The digits an awaited slot, or a task the words ask for, needs; else ``None``."""
        if state.intent is not None and state.awaiting is not None:
            slot = self.intents[state.intent].slots.get(state.awaiting)
            if slot is not None and slot.type == "digits":
                return slot.min_length
        if intent in self.intents:
            return next((s.min_length for s in self.intents[intent].slots.values()
                         if s.type == "digits" and s.required), None)
        return None

    # --- a task, turn by turn ------------------------------------------------------

    def start(self, name: str, ctx: TurnContext) -> None:
        """Make intent ``name`` the pending task: its lookups, then its slot defaults.

        Raises :class:`Refusal` when a lookup finds nothing (no booking to move).
        """
        intent, state = self.intents[name], ctx.state
        state.intent = name
        for step in intent.lookup:
            with self.db.transaction() as conn:
                self._sql(name, step, ctx, conn)
        values = self.values(intent, state, ctx.today)
        for slot_name, slot in intent.slots.items():
            if slot.default is not None:
                state.slots[slot_name] = coerce(slot, evaluate(slot.default, values),
                                                self.rows_for(slot, values))

    def respond(self, name: str, ctx: TurnContext) -> str:
        """Start intent ``name``: look up, fill what was said, and take the next step."""
        intent, state = self.intents[name], ctx.state
        try:
            self.start(name, ctx)
        except Refusal as refusal:
            return self._refused(refusal, ctx)
        self._fill(intent, ctx)
        step = self._next_step(intent, ctx)
        if intent.intro and state.intent == name and state.awaiting != CONFIRM:
            return f"{render(intent.intro, self.values(intent, state, ctx.today))} {step}"
        return step

    def resume(self, ctx: TurnContext) -> str | None:
        """Continue the pending task, or ``None`` if this turn did not serve it."""
        state = ctx.state
        assert state.intent is not None
        intent = self.intents[state.intent]
        if self._fill(intent, ctx):
            again = "Okay. " if state.awaiting in (CONFIRM, CHANGE) else ""
            return again + self._next_step(intent, ctx)
        if state.awaiting != CONFIRM:
            return None
        yes, no = yes_or_no(ctx.norm)
        if no:
            return self._refused(Refusal(intent.on_no, self.values(intent, state, ctx.today)),
                                 ctx)
        if not yes:
            return None
        try:
            return self.act(state.intent, ctx)
        except Refusal as refusal:
            return self._refused(refusal, ctx)

    def act(self, name: str, ctx: TurnContext) -> str:
        """Run intent ``name``'s action with the slots in ``ctx.state``; the reply.

        Raises :class:`Refusal` when a check fails or a step finds nothing; no
        change is kept then.
        """
        intent, state = self.intents[name], ctx.state
        with self.db.transaction() as conn:
            values = self.values(intent, state, ctx.today)
            for check in intent.checks:
                self._check(check, values, conn)
            for step in intent.action:
                if step.sql is not None:
                    self._sql(name, step, ctx, conn)
                else:  # inside the transaction: a failed webhook undoes the SQL before it
                    self._webhook(name, step, ctx)
        reply = render(intent.reply, self.values(intent, state, ctx.today))
        ctx.results = {k: v for k, v in state.slots.items() if k not in intent.slots}
        state.finish()
        return reply

    def options(self, slot: Slot, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A choice slot's options, in order."""
        assert slot.choices is not None
        sql, params = bind(slot.choices.sql, values)
        with self.db.transaction() as conn:
            return [dict(row) for row in conn.execute(sql, params).fetchall()]

    def rows_for(self, slot: Slot, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """What a slot's value is read from besides the words: a choice's options."""
        return self.options(slot, values) if slot.type == "choice" else []

    def values(self, intent: Intent, state: DialogState, today: date) -> dict[str, Any]:
        """What templates, conditions and SQL may name: slots (unset ones as None),
        results, and the built-ins."""
        values: dict[str, Any] = {name: None for name in intent.slots}
        values.update(state.slots)
        values.update(caller=state.caller_id, today=today, tenant=self.tenant.display_name)
        values["choices"] = _Choices(self, intent, values)
        return values

    # --- inside --------------------------------------------------------------------

    def _parse(self, slot: Slot, name: str, norm: str, raw: str, today: date,
               awaiting: str | None, values: Mapping[str, Any]) -> Any:
        return parse(slot, norm, raw, today, awaited=awaiting == name,
                     rows=self.rows_for(slot, values))

    def _fill(self, intent: Intent, ctx: TurnContext) -> bool:
        """Take every slot the words give; True if any changed. The slot just asked for
        is read first: a pick by position or free text answers only it."""
        state, awaiting = ctx.state, ctx.state.awaiting
        values = self.values(intent, state, ctx.today)
        found: dict[str, Any] = {}
        others: Mapping[str, Slot] = intent.slots
        if awaiting is not None and (asked := intent.slots.get(awaiting)) is not None:
            found[awaiting] = self._parse(asked, awaiting, ctx.norm, ctx.raw, ctx.today,
                                          awaiting, values)
            if found[awaiting] is not None and answers_only_itself(asked, found[awaiting]):
                others = {}
        for name, slot in others.items():
            if name not in found:
                found[name] = self._parse(slot, name, ctx.norm, ctx.raw, ctx.today,
                                          awaiting, values)
        changed = {n: v for n, v in found.items() if v is not None and state.slots.get(n) != v}
        state.slots.update(changed)
        return bool(changed)

    def _next_step(self, intent: Intent, ctx: TurnContext) -> str:
        state = ctx.state
        assert state.intent is not None
        values = self.values(intent, state, ctx.today)
        for name, slot in intent.slots.items():
            if slot.required and state.slots.get(name) is None:
                return state.ask(name, render(slot.ask, values))
        try:
            if intent.checks:
                with self.db.transaction() as conn:
                    for check in intent.checks:
                        self._check(check, values, conn)
            if intent.confirm is not None:
                return state.ask(CONFIRM, render(intent.confirm, values))
            return self.act(state.intent, ctx)
        except Refusal as refusal:
            return self._refused(refusal, ctx)

    def _refused(self, refusal: Refusal, ctx: TurnContext) -> str:
        text, state, wait = str(refusal), ctx.state, refusal.outcome.ask
        if wait is None:
            state.finish()
        elif wait == "any":
            state.ask(CHANGE, text)
        else:
            state.slots.pop(wait, None)
            state.ask(wait, text)
        return text

    def _check(self, check: Check, values: Mapping[str, Any], conn: sqlite3.Connection) -> None:
        if check.when is not None:
            failed = bool(evaluate(check.when, values))
        else:
            sql, params = bind(check.require or check.refuse or "", values)
            found = conn.execute(sql, params).fetchone() is not None
            failed = found if check.refuse is not None else not found
        if failed:
            raise Refusal(check.fail, values)

    def _traced(self, intent: str, step: Step, sql: str, ctx: TurnContext) -> None:
        names = {name for name, _ in sql_names(sql)} - BUILTIN_NAMES
        slots = self.intents[intent].slots
        ctx.called(step.tool or intent, **{n: _argument(ctx.state.slots.get(n))
                                           for n in sorted(names) if n in slots})

    def _sql(self, intent: str, step: Step, ctx: TurnContext, conn: sqlite3.Connection) -> None:
        assert step.sql is not None
        self._traced(intent, step, step.sql, ctx)
        values = self.values(self.intents[intent], ctx.state, ctx.today)
        sql, params = bind(step.sql, values)
        cursor = conn.execute(sql, params)
        if step.changes_data:
            if cursor.rowcount == 0 and step.not_found is not None:
                raise Refusal(step.not_found, values)
            if step.as_:
                ctx.state.slots[step.as_] = {"id": cursor.lastrowid, "changed": cursor.rowcount}
            return
        rows = [dict(row) for row in cursor.fetchall()]
        if not rows and step.not_found is not None:
            raise Refusal(step.not_found, values)
        if step.as_:
            ctx.state.slots[step.as_] = rows if step.many else (rows[0] if rows else None)

    def _webhook(self, intent: str, step: Step, ctx: TurnContext) -> None:
        hook = step.webhook
        assert hook is not None
        slots = self.intents[intent].slots
        body = {"caller": ctx.state.caller_id,
                **{n: _argument(ctx.state.slots.get(n)) for n in slots}}
        ctx.called(step.tool or intent, **{n: body[n] for n in slots})
        values = self.values(self.intents[intent], ctx.state, ctx.today)
        try:
            response = (self._http or _webhook_client()).request(
                hook.method, hook.url, timeout=hook.timeout,
                **({"params": body} if hook.method == "GET" else {"json": body}))
            response.raise_for_status()
            result = response.json() if response.content else {}
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("%s: webhook %s for %s failed: %s", self.tenant.name, hook.url,
                        intent, exc)
            raise Refusal(Outcome(say=hook.failure), values) from exc
        if step.as_:
            ctx.state.slots[step.as_] = result


@functools.cache
def _webhook_client() -> httpx.Client:
    """One connection pool for every tenant's webhooks (made on first use: building
    its TLS context costs 60 ms, which a tenant without webhooks should not pay)."""
    return httpx.Client()


def _argument(value: Any) -> Any:
    """A slot's value as a trace argument or a webhook field: a choice by its key."""
    if isinstance(value, Choice):
        return value.key
    return sql_value(value)


def jsonable(value: Any) -> Any:
    """Slots and results as JSON (an LLM tool's answer): choices by key, ISO dates."""
    if isinstance(value, Choice):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return sql_value(value)
