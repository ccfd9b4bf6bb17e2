"""A tenant's intents as an LLM's function tools, run by the same rules as the engine.

Each intent becomes a function whose parameters are its slots; a call runs the
intent's lookups, checks and action through :meth:`Rules.act
<voice_agent.dialog.rules.Rules.act>`, so the model cannot book what the rule
engine would refuse. Two tools every tenant has, :data:`TRANSFER` and
:data:`END_CALL`, are acted on by :class:`~voice_agent.dialog.llm_dialog.LlmDialog`
itself. Refusals go back to the model as ``{"error": ...}`` in words a caller
can hear.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from voice_agent.dialog.rules import Refusal, Rules, jsonable
from voice_agent.dialog.slots import coerce
from voice_agent.dialog.state import DialogState, TurnContext
from voice_agent.dialog.templates import TemplateError
from voice_agent.providers.llm import ToolSpec
from voice_agent.tenants.spec import Intent, Slot

TRANSFER = ToolSpec("transfer_to_operator", "Connect the caller to a person. Use when they "
                    "ask for one or you cannot help.", {"type": "object", "properties": {}})
END_CALL = ToolSpec("end_call", "End the call after saying goodbye, when the caller is done.",
                    {"type": "object", "properties": {}})
#: Most options listed as an enum in a choice parameter.
MAX_ENUM = 30


def _parameter(rules: Rules, slot: Slot, caller_id: str, today: date) -> dict[str, Any]:
    described = {"description": slot.description} if slot.description else {}
    if slot.type == "digits":
        upper = slot.max_length or ""
        return {"type": "string", "pattern": f"^[0-9]{{{slot.min_length},{upper}}}$",
                **described}
    if slot.type in ("date", "time"):
        form = "Date as YYYY-MM-DD." if slot.type == "date" else "24-hour time as HH:MM."
        return {"type": "string", "description": f"{slot.description} {form}".strip()}
    if slot.type == "yes_no":
        return {"type": "boolean", **described}
    if slot.type == "choice":
        assert slot.choices is not None
        try:
            rows = rules.options(slot, {"caller": caller_id, "today": today})
        except KeyError:  # the options depend on other slots: no fixed list
            rows = []
        if 0 < len(rows) <= MAX_ENUM:
            return {"type": "string", "enum": [str(r[slot.choices.key]) for r in rows],
                    **described}
    return {"type": "string", **described}


def _spec(rules: Rules, name: str, intent: Intent, caller_id: str, today: date) -> ToolSpec:
    properties = {n: _parameter(rules, s, caller_id, today) for n, s in intent.slots.items()}
    required = [n for n, s in intent.slots.items() if s.required and s.default is None]
    confirm = " Call it only after the caller said yes to the details." if intent.confirm \
        else ""
    return ToolSpec(name, (intent.description or name.replace("_", " ")) + confirm,
                    {"type": "object", "properties": properties, "required": required})


def tool_specs(rules: Rules, caller_id: str = "anonymous",
               today: date | None = None) -> tuple[ToolSpec, ...]:
    """Every intent as a function, then :data:`TRANSFER` and :data:`END_CALL`."""
    today = today or date.today()
    return (*(_spec(rules, n, i, caller_id, today) for n, i in rules.intents.items()),
            TRANSFER, END_CALL)


def run_tool(rules: Rules, name: str, arguments: dict[str, Any], caller_id: str,
             today: date) -> dict[str, Any]:
    """Run intent ``name`` with the model's arguments; the JSON result or ``error``."""
    intent = rules.intents.get(name)
    if intent is None:
        return {"error": f"unknown tool {name}"}
    ctx = TurnContext(DialogState(caller_id=caller_id), "", today)
    state = ctx.state
    try:
        rules.start(name, ctx)
        values = rules.values(intent, state, today)
        for slot_name, slot in intent.slots.items():
            if slot_name in arguments:
                state.slots[slot_name] = coerce(slot, arguments[slot_name],
                                                rules.rows_for(slot, values))
        missing = [n for n, s in intent.slots.items() if s.required and state.slots.get(n) is None]
        if missing:
            return {"error": f"missing {', '.join(missing)}: ask the caller"}
        reply = rules.act(name, ctx)
    except Refusal as refusal:
        return {"error": str(refusal)}
    except (KeyError, ValueError, TemplateError) as exc:
        return {"error": f"bad arguments for {name}: {exc}"}
    return {"result": reply, **jsonable(ctx.results)}
