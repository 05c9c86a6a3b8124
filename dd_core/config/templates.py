"""The one Jinja environment dd renders with: sandboxed, strict, compiled once per template."""

from __future__ import annotations

from functools import lru_cache

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    # StrictUndefined: a typo in a template is an error, not an empty string in the data.
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


class TemplateProblem(ValueError):
    """A template is malformed or reaches for something the sandbox forbids."""


def parse(source: str) -> nodes.Template:
    try:
        return environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error on line {exc.lineno}: {exc.message}") from exc


def referenced_names(source: str) -> set[str]:
    """Top-level variables a template reads (its column dependencies)."""
    return set(meta.find_undeclared_variables(parse(source)))


def check_safe(source: str) -> None:
    """Refuse templates that reach private or dunder attributes (``__class__``, ``_x``...).

    The sandbox also refuses them at render time; checking here turns a mid-run failure
    into a config error.
    """
    tree = parse(source)
    forbidden = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else _constant_key(node)
        if isinstance(name, str) and name.startswith("_") and name not in forbidden:
            forbidden.append(name)
    if forbidden:
        names = ", ".join(f"'{n}'" for n in sorted(forbidden))
        raise TemplateProblem(f"template accesses {names}, which the sandbox forbids; only public fields of columns may be used")


def _constant_key(node: nodes.Getitem) -> object:
    return node.arg.value if isinstance(node.arg, nodes.Const) else None


@lru_cache(maxsize=256)
def compile_template(source: str) -> jinja2.Template:
    return environment().from_string(source)
