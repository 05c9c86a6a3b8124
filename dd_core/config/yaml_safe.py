"""YAML (and JSON) text to plain data, safely: bounded alias expansion, no duplicate keys.

PyYAML's safe loader shares one object per anchor, so an alias "bomb" (nine levels of ten
aliases each) loads quickly but stands for a billion values; whatever walks it next (pydantic,
an error message) then runs for hours. The document's expanded size is therefore measured on
the composed node graph (each shared node once) before anything is built from it. A key that
appears twice in one mapping (e.g. two ``columns:`` sections) is an error, not last-wins.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

#: Values a document may stand for once its aliases are expanded.
MAX_EXPANDED_NODES = 1_000_000
MERGE_TAG = "tag:yaml.org,2002:merge"

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class AliasBomb(yaml.YAMLError):
    def __init__(self, size: int | None):
        self.size = size
        what = (
            "refers to itself through an alias"
            if size is None
            else f"expands to more than {MAX_EXPANDED_NODES:,} values"
        )
        super().__init__(
            f"the document {what} (YAML anchors &x and aliases *x); write the values out or use fewer aliases"
        )


class BoundedSafeLoader(_Base):
    def get_single_node(self) -> Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node.value, str):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key_node.value[:80]!r} twice (first at line {seen[key].start_mark.line + 1}); "
                    "each key may appear once",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: Node) -> None:
    """Size of the document with every alias expanded, counted without expanding (iteratively)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            in_progress.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_EXPANDED_NODES:
                raise AliasBomb(sizes[key])
            continue
        if key in sizes:
            continue
        if key in in_progress:
            raise AliasBomb(None)
        in_progress.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load(text: str) -> Any:
    return yaml.load(text, Loader=BoundedSafeLoader)  # noqa: S506 (a SafeLoader subclass)
