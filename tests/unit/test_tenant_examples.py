"""Every shipped tenant's example conversations hold when rehearsed through the rule engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voice_agent.dialog.engine import DialogEngine
from voice_agent.dialog.examples import Scratch, rehearse
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.spec import Conversation, ConversationOutcome, ConversationStep

SHIPPED = [(t, c) for t in TenantRegistry.load() for c in t.conversations]


@pytest.mark.parametrize(("tenant", "conversation"), SHIPPED,
                         ids=[f"{t.name}: {c.name}" for t, c in SHIPPED])
def test_example_conversation_holds(tenant, conversation: Conversation) -> None:
    assert rehearse(tenant, conversation) == []


def test_every_tenant_has_a_demo_and_benchmark_lines(registry: TenantRegistry) -> None:
    for tenant in registry:
        uses = {use for c in tenant.conversations for use in c.use}
        assert {"demo", "latency", "paused"} <= uses, tenant.name


def test_a_broken_example_says_which_step_and_what_was_said(registry: TenantRegistry) -> None:
    tenant = registry.resolve(["techstore"])
    wrong = Conversation(name="x", steps=[ConversationStep(say="Where is order 12345?",
                                                           expect="was delivered")],
                         outcome=ConversationOutcome(description="never", sql="SELECT 1 "
                                                     "FROM orders WHERE 0"))
    problems = rehearse(tenant, wrong)
    assert "step 1 ('Where is order 12345?')" in problems[0] and "has shipped" in problems[0]
    assert problems[1] == "outcome not true afterwards: never"


def test_no_tenant_name_or_fact_is_in_the_python(registry: TenantRegistry) -> None:
    """A business lives in its files: its name, and the names of the things callers pick
    (clinics, courses, products), appear nowhere in the service's Python."""
    facts = {t.name for t in registry} | {t.display_name for t in registry}
    for tenant in registry:
        rules = DialogEngine(tenant, Scratch()).rules
        for slot in (s for i in tenant.intents.values() for s in i.slots.values()):
            if slot.choices is not None:
                for row in rules.options(slot, {"caller": "x", "today": None}):
                    facts |= {str(row[slot.choices.key])}
                    facts |= {str(v) for k, v in row.items() if k in ("name", "title")}
    pattern = re.compile("|".join(rf"\b{re.escape(f)}\b" for f in sorted(facts)), re.I)
    package = Path(__file__).parents[2] / "voice_agent"
    found = [f"{path.relative_to(package)}:{n}: {line.strip()}"
             for path in package.rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert len(facts) > 15 and found == []
