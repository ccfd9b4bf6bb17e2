"""Every shipped tenant's example conversations hold when rehearsed through the rule engine."""

from __future__ import annotations

import pytest

from voice_agent.dialog.examples import rehearse
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
