"""The acceptance rule: a Jinja boolean expression over one row (``accept:`` in a config).

It is parsed, checked and compiled by the same bounded sandbox as every template (private
attributes and unseeded randomness refused, constant expressions checked against the render
limits before anything runs, every evaluation within ``render_limits``). Before a run, the
rule's shape is checked against the columns it reads: a name no column makes, a field a
struct column does not have, or an expression that can only give a number, text or a list
(``score + 1``, ``answer | length``) is a config error. What cannot be known before rendering
(a method call, a seed column) is checked per row: anything but ``true`` or ``false`` stops the
run with a message naming the candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.parser import Parser

from dd_core.config import render_limits as limits
from dd_core.config.render_limits import RenderLimits
from dd_core.config.templates import TemplateProblem, check_limits, check_nodes, environment

#: A value's shape as far as a config says: one of these names, or a struct's fields by name.
Shape = str | dict[str, Any]
BOOL, NUMBER, TEXT, LIST, NONE, UNKNOWN = "true/false", "a number", "text", "a list", "nothing (none)", "unknown"

#: Filters that never give true or false.
_NOT_BOOL_FILTERS = {
    "length": NUMBER,
    "count": NUMBER,
    "int": NUMBER,
    "float": NUMBER,
    "round": NUMBER,
    "abs": NUMBER,
    "sum": NUMBER,
    "wordcount": NUMBER,
    "string": TEXT,
    "lower": TEXT,
    "upper": TEXT,
    "trim": TEXT,
    "title": TEXT,
    "capitalize": TEXT,
    "join": TEXT,
    "replace": TEXT,
    "format": TEXT,
    "tojson": TEXT,
    "list": LIST,
    "sort": LIST,
    "unique": LIST,
}


def parse_rule(source: str) -> nodes.Template:
    """The rule as a template that assigns its value (what Jinja's ``compile_expression`` compiles)."""
    try:
        parser = Parser(environment(), source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise jinja2.TemplateSyntaxError("unexpected text after the expression", parser.stream.current.lineno)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"not a Jinja expression: {exc.message}") from exc
    except (RecursionError, MemoryError) as exc:
        raise TemplateProblem("the rule nests too deeply to be parsed; flatten it") from exc
    tree = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)], lineno=1)
    return tree.set_environment(environment())


def rule_names(source: str) -> set[str]:
    """Columns the rule reads."""
    return set(meta.find_undeclared_variables(parse_rule(source)))


def check_rule(source: str, render_limits: RenderLimits) -> None:
    """Refuse what the sandbox refuses and what constant parts already show past the limits."""
    tree = parse_rule(source)
    check_nodes(tree)
    try:
        check_limits(tree, render_limits)
    except TemplateProblem as exc:
        raise TemplateProblem(str(exc).replace("template exceeds", "the rule exceeds")) from exc
    try:
        compile_rule(source)
    except jinja2.TemplateSyntaxError as exc:  # e.g. an unknown filter or test
        raise TemplateProblem(f"the rule does not compile: {exc.message}") from exc
    except (RecursionError, MemoryError, SyntaxError) as exc:
        raise TemplateProblem("the rule nests too deeply to be compiled; flatten it") from exc


@lru_cache(maxsize=64)
def compile_rule(source: str) -> jinja2.environment.TemplateExpression:
    return environment().compile_expression(source, undefined_to_none=False)


def evaluate_rule(source: str, contexts: Iterable[dict], render_limits: RenderLimits) -> Iterable[Any]:
    """The rule's value for each context, each within ``render_limits`` (exceptions propagate:
    the caller names the row)."""
    expression = compile_rule(source)
    saved = limits.begin(render_limits)
    budget, timeout_s = limits.budget(), render_limits.timeout_s
    try:
        for context in contexts:
            budget.deadline, budget.chars = time.monotonic() + timeout_s, 0
            yield expression(context)
    finally:
        limits.end(saved)


def shape_problems(source: str, shape_of: Callable[[str], Shape]) -> list[str]:
    """Why the rule cannot be a true/false condition over these columns (empty when it may be)."""
    expr = parse_rule(source).body[0].node
    problems: list[str] = []
    shape = _shape(expr, shape_of, problems)
    if not problems and shape not in (BOOL, UNKNOWN):
        problems.append(
            f"the rule must give true or false, but it gives {_described(shape)}; compare it (e.g. 'score >= 2')"
        )
    return problems


def _described(shape: Shape) -> str:
    return "a struct" if isinstance(shape, dict) else shape


def _shape(node: nodes.Node, shape_of: Callable[[str], Shape], problems: list[str]) -> Shape:
    if isinstance(node, nodes.Compare):
        _compare(node, shape_of, problems)
        return BOOL
    if isinstance(node, (nodes.Not, nodes.Test)):
        for child in node.iter_child_nodes():
            _shape(child, shape_of, problems)  # for the names and fields they read
        return BOOL
    if isinstance(node, (nodes.And, nodes.Or)):
        sides = [_shape(node.left, shape_of, problems), _shape(node.right, shape_of, problems)]
        bad = [s for s in sides if s not in (BOOL, UNKNOWN)]
        if bad and not problems:
            word = "and" if isinstance(node, nodes.And) else "or"
            problems.append(
                f"'{word}' joins {_described(bad[0])}, so the rule can give that instead of true or false; compare it"
            )
        return BOOL if not bad and UNKNOWN not in sides else UNKNOWN if not bad else bad[0]
    if isinstance(node, nodes.CondExpr):
        _shape(node.test, shape_of, problems)
        if node.expr2 is None:
            return UNKNOWN if not problems else NONE
        sides = [_shape(node.expr1, shape_of, problems), _shape(node.expr2, shape_of, problems)]
        bad = [s for s in sides if s not in (BOOL, UNKNOWN)]
        return bad[0] if bad else BOOL if UNKNOWN not in sides else UNKNOWN
    if isinstance(node, nodes.Const):
        value = node.value
        return (
            BOOL
            if isinstance(value, bool)
            else NONE
            if value is None
            else NUMBER
            if isinstance(value, (int, float))
            else TEXT
        )
    if isinstance(node, nodes.Name):
        return shape_of(node.name)
    if isinstance(node, (nodes.Getattr, nodes.Getitem)):
        return _field_shape(node, shape_of, problems)
    if isinstance(node, (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow)):
        _shape(node.left, shape_of, problems)
        _shape(node.right, shape_of, problems)
        return NUMBER
    if isinstance(node, (nodes.Neg, nodes.Pos)):
        _shape(node.node, shape_of, problems)
        return NUMBER
    if isinstance(node, nodes.Concat):
        for child in node.nodes:
            _shape(child, shape_of, problems)
        return TEXT
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return LIST
    if isinstance(node, nodes.Dict):
        return {}
    if isinstance(node, nodes.Filter):
        if node.node is not None:
            _shape(node.node, shape_of, problems)
        return _NOT_BOOL_FILTERS.get(node.name, UNKNOWN)
    for child in node.iter_child_nodes():  # a call, a slice...: read for its names
        _shape(child, shape_of, problems)
    return UNKNOWN


_ORDERING = {"gt", "gteq", "lt", "lteq"}


def _compare(node: nodes.Compare, shape_of: Callable[[str], Shape], problems: list[str]) -> None:
    """``score >= 2`` where score is text (a JSON key, say) would fail on every row: say so now."""
    left = _shape(node.expr, shape_of, problems)
    for operand in node.ops:
        right = _shape(operand.expr, shape_of, problems)
        if operand.op in _ORDERING and {left, right} == {TEXT, NUMBER} and not problems:
            problems.append(
                f"the rule compares {left} with {right} ('{_path(node.expr)}'), which fails on every row; "
                "compare like with like (judge options written as a mapping in JSON have text keys: use a list)"
            )
        left = right


def _field_shape(node: nodes.Getattr | nodes.Getitem, shape_of: Callable[[str], Shape], problems: list[str]) -> Shape:
    owner = _shape(node.node, shape_of, problems)
    if isinstance(node, nodes.Getattr):
        field = node.attr
    elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        field = node.arg.value
    else:
        _shape(node.arg, shape_of, problems)
        return UNKNOWN
    if not isinstance(owner, dict) or not owner:
        return UNKNOWN  # a method of text, a seed column's value, a JSON object of unknown shape
    if field not in owner:
        if not problems:
            problems.append(
                f"the rule reads '{_path(node)}', but '{_path(node.node)}' has no field '{field}' "
                f"(its fields: {', '.join(owner)})"
            )
        return UNKNOWN
    return owner[field]


def _path(node: nodes.Node) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_path(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return f"{_path(node.node)}[{node.arg.value!r}]"
    return "..."
