"""Reply templates and conditions from tenant files, rendered in a Jinja2 sandbox.

Tenant files are written by the people who run the service, not by us, so
templates run in Jinja2's immutable sandbox (no attribute tricks, no writes)
with strict undefined names: a template that names a slot the intent does not
have fails ``tenants check`` instead of saying a blank to a caller. The filters
are the ones a phone reply needs: dates, times and digits as people say them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, time
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from voice_agent.dialog.text import say_date, say_digits, say_time


class TemplateError(ValueError):
    """A template or condition that does not parse or names something unknown."""


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _as_time(value: Any) -> time:
    return value if isinstance(value, time) else time.fromisoformat(str(value))


def _say_list(items: Iterable[Any], last: str = "and") -> str:
    """``["A", "B", "C"]`` → ``A, B, and C``; ``["A", "B"]`` → ``A and B``
    (``last="or"``: ``A, B, or C``)."""
    words = [str(item) for item in items]
    if len(words) < 3:
        return f" {last} ".join(words)
    return f"{', '.join(words[:-1])}, {last} {words[-1]}"


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters.update({
        "say_date": lambda v: say_date(_as_date(v)),
        "say_time": lambda v: say_time(_as_time(v)),
        "say_digits": lambda v: say_digits(str(v)),
        "weekday": lambda v: f"{_as_date(v):%A}",
        "say_list": _say_list,
    })
    return env


@lru_cache(maxsize=4096)
def _compiled(source: str) -> jinja2.Template:
    try:
        return environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {source!r}: {exc.message}") from exc


@lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    try:
        return environment().compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"condition {source!r}: {exc.message}") from exc


def render(source: str, values: Mapping[str, Any]) -> str:
    """``source`` filled from ``values``, its whitespace collapsed (YAML blocks read well)."""
    try:
        return " ".join(_compiled(source).render(**values).split())
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {source!r}: {exc}") from exc


def evaluate(source: str, values: Mapping[str, Any]) -> Any:
    """The value of the Jinja2 expression ``source`` (a condition or a default)."""
    try:
        return _expression(source)(**values)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"condition {source!r}: {exc}") from exc


def names_in(source: str, *, expression: bool = False) -> set[str]:
    """The free names a template (or an expression) reads, for ``tenants check``."""
    text = f"{{{{ {source} }}}}" if expression else source
    try:
        return set(meta.find_undeclared_variables(environment().parse(text)))
    except jinja2.TemplateSyntaxError as exc:
        kind = "condition" if expression else "template"
        raise TemplateError(f"{kind} {source!r}: {exc.message}") from exc
