"""YAML with line numbers, so a tenant author is told where a mistake is.

PyYAML's ``safe_load`` forgets positions; its node tree keeps them. Loading
through :func:`load` keeps the tree, and :func:`line_of` follows a pydantic
error location (``("intents", "book", "slots", "date", "type")``) down it to the
line of the nearest node that exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML document and its node tree."""

    value: Any
    node: yaml.Node | None


#: libyaml's parser when PyYAML was built with it (ten times faster), else the pure one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> YamlDoc:
    """Parse ``text`` (raises :class:`yaml.YAMLError` with its own line on bad syntax)."""
    node = yaml.compose(text, Loader=_LOADER)
    return YamlDoc(yaml.load(text, Loader=_LOADER), node)  # noqa: S506 (a safe loader)


def line_of(doc: YamlDoc, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the deepest node on the path ``loc``."""
    node = doc.node
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(key):
                    child, line = value_node, key_node.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) \
                and 0 <= key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
