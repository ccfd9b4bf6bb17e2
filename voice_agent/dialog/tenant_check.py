"""``voice-agent tenants check``: everything wrong with a tenants directory, with file and line.

Loading (:mod:`voice_agent.tenants.loader`) already rejects what the schema
forbids: an unknown slot type, a missing field, a number claimed twice. This
module checks what only makes sense across files, before a caller meets it:

* ``data.sql`` runs, and runs twice (it is replayed on every start);
* every SQL statement compiles against the tenant's own tables, and every
  ``:name`` it uses is a slot, a result or a built-in of its intent;
* every template and condition parses and names only what its intent has;
* patterns compile, ``when_heard`` and ``ask`` name real slots, hours parse;
* every intent's example phrases start that intent (and not an earlier one);
* an action that changes data is confirmed first;
* every example conversation still does what it says (rehearsed in text).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voice_agent.dialog.examples import Scratch, rehearse
from voice_agent.dialog.rules import Rules
from voice_agent.dialog.templates import TemplateError, names_in
from voice_agent.dialog.text import normalize
from voice_agent.tenants import Problem, Tenant, TenantSource
from voice_agent.tenants.data import bind, sql_names
from voice_agent.tenants.loader import read_tenants
from voice_agent.tenants.spec import BUILTIN_NAMES, Intent, Outcome, Step

Loc = tuple[str | int, ...]


def check_tenants(directory: Path) -> tuple[list[Tenant], list[Problem]]:
    """The tenants in ``directory``, and every problem in them (read once)."""
    sources, problems = read_tenants(directory)
    for source in sources:
        problems += check_tenant(source)
    return [source.tenant for source in sources], problems


def check_directory(directory: Path) -> tuple[int, list[Problem]]:
    """How many tenants ``directory`` holds, and every problem in them."""
    tenants, problems = check_tenants(directory)
    return len(tenants), problems


def check_tenant(source: TenantSource) -> list[Problem]:
    """Every problem of one loaded tenant (see the module docstring)."""
    return list(_TenantChecker(source).problems())


def _with_nulls(sql: str) -> tuple[str, dict[str, Any]]:
    """``sql`` bound with every value it names as NULL: enough to compile it."""
    values: dict[str, Any] = {}
    for name, column in sql_names(sql):
        if column is not None:
            values[name] = {**(values.get(name) or {}), column: None}
        else:
            values.setdefault(name, None)
    return bind(sql, values)


def _sql_statements(script: str) -> Iterator[tuple[int, str]]:
    """``script``'s statements with the line each starts on."""
    pending, start = "", 1
    for number, line in enumerate(script.splitlines(), 1):
        if not pending.strip():
            pending, start = "", number
        pending += line + "\n"
        if sqlite3.complete_statement(pending):
            yield start, pending
            pending = ""
    if pending.strip():
        yield start, pending


class _TenantChecker:
    def __init__(self, source: TenantSource) -> None:
        self.source, self.tenant = source, source.tenant
        self.db = sqlite3.connect(":memory:")

    def problems(self) -> Iterator[Problem]:
        yield from self._data()
        yield from self._tenant_file()
        for name, intent in self.tenant.intents.items():
            yield from self._intent(name, intent)
        yield from self._examples()
        yield from self._conversations()
        self.db.close()

    def _at(self, part: str, loc: Loc, message: str) -> Problem:
        path, line = self.source.locate(part, loc)
        return Problem(path, line, message)

    # --- data.sql ------------------------------------------------------------------

    def _data(self) -> Iterator[Problem]:
        directory = self.source.directory
        path = directory / "data.sql" if directory else Path(self.tenant.name)
        counts: dict[str, int] = {}
        for run in ("", " on its second run (keep CREATE TABLE IF NOT EXISTS and "
                        "INSERT OR IGNORE: it runs on every start)"):
            for line, statement in _sql_statements(self.tenant.data_sql):
                try:
                    self.db.execute(statement)
                except sqlite3.Error as exc:
                    yield Problem(path, line, f"data.sql fails{run}: {exc}")
                    return
            before, counts = counts, self._row_counts()
        for table, rows in counts.items():
            if rows > before.get(table, 0):
                yield Problem(path, None, f"data.sql adds rows to {table} again on its "
                              "second run: give the table a PRIMARY KEY (or UNIQUE) column, "
                              "so that INSERT OR IGNORE skips rows it already has")

    def _row_counts(self) -> dict[str, int]:
        tables = [r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: self.db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}

    # --- tenant.yaml ---------------------------------------------------------------

    def _tenant_file(self) -> Iterator[Problem]:
        if self.tenant.emergency is not None:
            for i, phrase in enumerate(self.tenant.emergency.phrases):
                yield from self._regex("tenant", ("emergency", "phrases", i), phrase)
        hours = self.tenant.hours
        if hours is not None:
            try:
                ZoneInfo(hours.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                yield self._at("tenant", ("hours", "timezone"),
                               f"unknown timezone {hours.timezone!r}")
            for day, span in hours.open.items():
                if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d", span) \
                        or span[:5] >= span[6:]:
                    yield self._at("tenant", ("hours", "open", day),
                                   f"hours {span!r}: expected 'HH:MM-HH:MM', opening first")

    def _regex(self, part: str, loc: Loc, pattern: str) -> Iterator[Problem]:
        try:
            re.compile(pattern)
        except re.error as exc:
            yield self._at(part, loc, f"bad regular expression {pattern!r}: {exc}")

    # --- intents.yaml --------------------------------------------------------------

    def _intent(self, name: str, intent: Intent) -> Iterator[Problem]:
        where: Loc = (name,)
        for field in ("match", "match_last"):
            for i, pattern in enumerate(getattr(intent, field)):
                yield from self._regex("intents", (*where, field, i), pattern)
        for i, slot in enumerate(intent.when_heard):
            if slot not in intent.slots:
                yield self._at("intents", (*where, "when_heard", i),
                               f"intent {name}: when_heard names {slot!r}, not one of its slots")
        if intent.changes_data and intent.confirm is None:
            yield self._at("intents", (*where, "action"), f"intent {name}: its action changes "
                           "data, so it needs a 'confirm' question first")
        known = set(intent.slots) | BUILTIN_NAMES
        # Lookups bind their results before anything else runs.
        for i, step in enumerate(intent.lookup):
            yield from self._step(name, intent, step, (*where, "lookup", i), known)
            known |= {step.as_} if step.as_ else set()
        for slot_name, slot in intent.slots.items():
            at = (*where, "slots", slot_name)
            if slot.near is not None:
                yield from self._regex("intents", (*at, "near"), slot.near)
            yield from self._template(name, slot.ask, (*at, "ask"), known)
            if slot.default is not None:
                yield from self._template(name, slot.default, (*at, "default"), known,
                                          expression=True)
            if slot.choices is not None:
                yield from self._sql(name, slot.choices.sql, (*at, "choices", "sql"), known)
                yield from self._columns(name, slot.choices.sql, [slot.choices.key,
                                                                  *slot.choices.match],
                                         (*at, "choices"), known)
        yield from self._template(name, intent.intro, (*where, "intro"), known)
        for i, check in enumerate(intent.checks):
            at = (*where, "checks", i)
            if check.when is not None:
                yield from self._template(name, check.when, (*at, "when"), known, expression=True)
            for field in ("require", "refuse"):
                if (sql := getattr(check, field)) is not None:
                    yield from self._sql(name, sql, (*at, field), known)
            yield from self._outcome(name, intent, check.fail, (*at, "fail"), known)
        if intent.confirm is not None:
            yield from self._template(name, intent.confirm, (*where, "confirm"), known)
            yield from self._outcome(name, intent, intent.on_no, (*where, "on_no"), known)
        for i, step in enumerate(intent.action):
            yield from self._step(name, intent, step, (*where, "action", i), known)
            known |= {step.as_} if step.as_ else set()
        yield from self._template(name, intent.reply, (*where, "reply"), known)

    def _step(self, name: str, intent: Intent, step: Step, at: Loc,
              known: set[str]) -> Iterator[Problem]:
        if step.sql is not None:
            yield from self._sql(name, step.sql, (*at, "sql"), known)
        if step.webhook is not None:
            yield from self._template(name, step.webhook.failure, (*at, "webhook", "failure"),
                                      known)
        if step.not_found is not None:
            yield from self._outcome(name, intent, step.not_found, (*at, "not_found"), known)

    def _outcome(self, name: str, intent: Intent, outcome: Outcome, at: Loc,
                 known: set[str]) -> Iterator[Problem]:
        yield from self._template(name, outcome.say, (*at, "say"), known)
        if outcome.ask not in (None, "any") and outcome.ask not in intent.slots:
            yield self._at("intents", (*at, "ask"), f"intent {name}: 'ask: {outcome.ask}' "
                           "is not one of its slots (or 'any')")

    def _template(self, name: str, source: str, at: Loc, known: set[str], *,
                  expression: bool = False) -> Iterator[Problem]:
        if not source:
            return
        try:
            unknown = names_in(source, expression=expression) - known
        except TemplateError as exc:
            yield self._at("intents", at, f"intent {name}: {exc}")
            return
        for missing in sorted(unknown):
            yield self._at("intents", at, f"intent {name}: names {missing!r}, which is not "
                           f"a slot, a result or one of {', '.join(sorted(BUILTIN_NAMES))}")

    def _sql(self, name: str, sql: str, at: Loc, known: set[str]) -> Iterator[Problem]:
        unknown = {n for n, _ in sql_names(sql)} - known
        for missing in sorted(unknown):
            yield self._at("intents", at, f"intent {name}: SQL names :{missing}, which is not "
                           "a slot, a result or :caller/:today")
        try:
            plain, params = _with_nulls(sql)
            self.db.execute(f"EXPLAIN {plain}", params)
        except sqlite3.Error as exc:
            yield self._at("intents", at, f"intent {name}: SQL does not run on this tenant's "
                           f"tables: {exc}")

    def _columns(self, name: str, sql: str, columns: list[str], at: Loc,
                 known: set[str]) -> Iterator[Problem]:
        try:
            plain, params = _with_nulls(sql)
            cursor = self.db.execute(f"SELECT * FROM ({plain}) LIMIT 0", params)
        except sqlite3.Error:
            return  # reported by _sql
        have = {d[0] for d in cursor.description}
        for column in columns:
            if column not in have:
                yield self._at("intents", at, f"intent {name}: choices name column "
                               f"{column!r}, which the query does not return")

    def _examples(self) -> Iterator[Problem]:
        try:
            rules = Rules(self.tenant, Scratch().of(self.tenant.name, self.tenant.data_sql))
        except (sqlite3.Error, re.error):
            return  # reported above
        today = date.today()
        for name, intent in self.tenant.intents.items():
            for i, example in enumerate(intent.examples):
                try:
                    got = rules.intent_of(normalize(example), today)
                except (TemplateError, sqlite3.Error, KeyError, ValueError) as exc:
                    got = f"an error ({exc})"
                if got != name:
                    yield self._at("intents", (name, "examples", i),
                                   f"intent {name}: example {example!r} starts "
                                   f"{f'intent {got}' if got else 'no intent'}: widen its "
                                   "'match', or move it before the intent that took it")
        rules.db.close()

    # --- conversations.yaml --------------------------------------------------------

    def _conversations(self) -> Iterator[Problem]:
        for i, conversation in enumerate(self.tenant.conversations):
            try:
                found = rehearse(self.tenant, conversation)
            except (TemplateError, sqlite3.Error, KeyError, ValueError, re.error) as exc:
                found = [f"the engine failed: {exc}"]
            for problem in found:
                yield self._at("conversations", (i,),
                               f"example {conversation.name!r}: {problem}")
