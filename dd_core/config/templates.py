"""The one Jinja environment dd renders with: sandboxed, strict, bounded, compiled once per template.

Beyond Jinja's sandbox (no private attributes, no mutation of lists and dicts), every render
of one cell is bounded in time and output (``render_limits``): operators that grow values
are intercepted, padding and formatting filters check their widths, and loops and output
inside loops and macros are counted, and ``~`` results are measured (the compiled code routes
them through internal filters). Jinja's ``random`` filter and ``lipsum`` are refused: they draw from an unseeded
global generator, so a row group would not come out the same twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dd_core.config import render_limits as limits
from dd_core.config.render_limits import RenderLimitExceeded, RenderLimits

_LOOP_GUARD = "dd_loop_guard"
_OUTPUT_COUNTER = "dd_count_output"
_SIZE_CHECK = "dd_check_size"
#: Nodes whose body may run many times per render: output inside them is counted as it is made.
_REPEATING = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.AssignBlock)
#: Globals and filters that are not reproducible (they use Python's unseeded ``random``).
_UNSEEDED = {"random": "filter", "lipsum": "function"}


class _BoundedCode(CodeGenerator):
    """Compiles loops and repeated output through the budget's guards (see module docstring)."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _LOOP_GUARD, [], [], None, None, lineno=loop.lineno)
        for concat in list(node.find_all(nodes.Concat)):
            concat.nodes = [
                nodes.Filter(
                    nodes.Concat(concat.nodes, lineno=concat.lineno),
                    _SIZE_CHECK,
                    [],
                    [],
                    None,
                    None,
                    lineno=concat.lineno,
                )
            ]
        for block in node.find_all(_REPEATING):
            for output in block.find_all(nodes.Output):
                output.nodes = [
                    nodes.Filter(child, _OUTPUT_COUNTER, [], [], None, None, lineno=child.lineno)
                    for child in output.nodes
                ]
        super().visit_Template(node, frame)


@pass_context
def _loop_guard(context: Any, iterable: Iterable) -> Iterator:
    for item in iterable:
        limits.tick()
        yield item


@pass_context
def _count_output(context: Any, value: Any) -> Any:
    limits.count_output(value if isinstance(value, str) else str(value))
    return value


@pass_context
def _check_size(context: Any, value: Any) -> Any:
    limits.check_size(len(value), "joining these values with ~")
    return value


def _bounded_filter(name: str, original: Any) -> Any:
    kind = getattr(getattr(original, "jinja_pass_arg", None), "name", None)

    @pass_context
    def bounded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if name in ("join", "sum"):
            value = list(value)
            separator = args[0] if args else kwargs.get("d", "")
            if name == "join" or (len(args) > 1 or "start" in kwargs):
                limits.check_joined(value, separator if name == "join" else "", f"the filter {name}")
        else:
            limits.check_filter(name, value, args, kwargs)
        first = {"context": (context,), "eval_context": (context.eval_ctx,), "environment": (context.environment,)}.get(
            kind, ()
        )
        return original(*first, value, *args, **kwargs)

    return bounded


def _refuse(name: str) -> Any:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise jinja2.sandbox.SecurityError(_unseeded_message(name))

    return refused


def _unseeded_message(name: str) -> str:
    return f"'{name}' is not reproducible (Python's unseeded random); use a category, uniform or other sampler column instead"


class BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _BoundedCode

    def __init__(self) -> None:
        # StrictUndefined: a typo in a template is an error, not an empty string in the data.
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False)
        for name in (*limits.FILTER_CHECKS, "join", "sum"):
            self.filters[name] = _bounded_filter(name, self.filters[name])
        self.filters[_LOOP_GUARD] = _loop_guard
        self.filters[_OUTPUT_COUNTER] = _count_output
        self.filters[_SIZE_CHECK] = _check_size
        self.filters["random"] = _refuse("random")
        self.globals["lipsum"] = _refuse("lipsum")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        if (
            getattr(__obj, "__name__", None) == "join"
            and args
            and isinstance(getattr(__obj, "__self__", None), (str, bytes))
        ):
            args = (list(args[0]) if not isinstance(args[0], (str, bytes)) else args[0], *args[1:])
        limits.check_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        limits.check_result(result)
        return result

    def wrap_str_format(self, value: Any) -> Any:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            formatter = jinja2.sandbox.SandboxedFormatter(self)
            for _, _, spec, _ in formatter.parse(fmt):
                if spec:
                    limits.check_format_spec(formatter.vformat(spec, args, kwargs) if "{" in spec else spec)
            result = wrapper(*args, **kwargs)
            limits.check_final(result)
            return result

        return checked


@lru_cache(maxsize=1)
def environment() -> BoundedSandbox:
    return BoundedSandbox()


class TemplateProblem(ValueError):
    """A template is malformed or reaches for something the sandbox forbids."""


def parse(source: str) -> nodes.Template:
    try:
        return environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    except (RecursionError, MemoryError) as exc:
        raise TemplateProblem("template nests too deeply to be parsed; flatten its expressions") from exc


def referenced_names(source: str) -> set[str]:
    """Top-level variables a template reads (its column dependencies)."""
    return set(meta.find_undeclared_variables(parse(source)))


def check_safe(source: str) -> None:
    """Refuse templates that reach private or dunder attributes (``__class__``, ``_x``...), use
    unseeded randomness, or cannot be compiled.

    The sandbox also refuses them at render time; checking here turns a mid-run failure
    into a config error.
    """
    check_nodes(parse(source))
    try:
        compile_template(source)
    except jinja2.TemplateSyntaxError as exc:  # e.g. an unknown filter or test
        raise TemplateProblem(f"template error on line {exc.lineno}: {exc.message}") from exc
    except (RecursionError, MemoryError, SyntaxError) as exc:
        raise TemplateProblem("template nests too deeply to be compiled; flatten its expressions") from exc


def check_nodes(tree: nodes.Node) -> None:
    """Refuse private or dunder attributes and unseeded randomness anywhere in a parsed template
    or expression (see ``check_safe``)."""
    forbidden = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else _constant_key(node)
        if isinstance(name, str) and name.startswith("_") and name not in forbidden:
            forbidden.append(name)
    if forbidden:
        names = ", ".join(f"'{n}'" for n in sorted(forbidden))
        raise TemplateProblem(
            f"template accesses {names}, which the sandbox forbids; only public fields of columns may be used"
        )
    for node in tree.find_all((nodes.Filter, nodes.Name)):
        if node.name in _UNSEEDED and isinstance(
            node, nodes.Filter if _UNSEEDED[node.name] == "filter" else nodes.Name
        ):
            raise TemplateProblem(f"template uses {_unseeded_message(node.name)}")


def check_limits(source: str | nodes.Node, render_limits: RenderLimits) -> None:
    """What can be known before rendering: constant expressions and constant filter widths
    (of a template's source, or of a parsed template or expression)."""
    saved = limits.begin(render_limits)
    try:
        tree = parse(source) if isinstance(source, str) else source
        for node in tree.find_all((nodes.BinExpr, nodes.Filter, nodes.Call)):
            _static_check(node)
    except RenderLimitExceeded as exc:
        raise TemplateProblem(f"template exceeds its render limits: {exc}") from exc
    finally:
        limits.end(saved)


class _Unknown(Exception):
    """The value of a node is not known before rendering."""


def _const(node: nodes.Node) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Tuple):
        return tuple(_const(item) for item in node.items)
    if isinstance(node, nodes.List):
        return [_const(item) for item in node.items]
    if isinstance(node, nodes.Neg):
        return -_const(node.node)
    if isinstance(node, nodes.BinExpr):
        left, right = _const(node.left), _const(node.right)
        limits.check_binop(node.operator, left, right)
        try:
            return environment().binop_table[node.operator](left, right)
        except Exception as exc:
            raise _Unknown from exc
    raise _Unknown


def _static_check(node: nodes.Node) -> None:
    try:
        if isinstance(node, nodes.BinExpr):
            _const(node)
        elif isinstance(node, nodes.Filter) and node.name in limits.FILTER_CHECKS:
            value = _const(node.node) if node.node is not None else ""
            limits.check_filter(node.name, value, *_const_arguments(node))
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            owner = _const(node.node.node)
            if isinstance(owner, str) and not node.node.attr.startswith("_"):
                limits.check_call(getattr(owner, node.node.attr, None), *_const_arguments(node))
    except _Unknown:
        _static_check_widths(node)


def _const_arguments(node: nodes.Filter | nodes.Call) -> tuple[tuple, dict]:
    return tuple(_const(a) for a in node.args), {k.key: _const(k.value) for k in node.kwargs}


def _static_check_widths(node: nodes.Node) -> None:
    """A filter on an unknown value (a column) with constant widths: check what the widths alone imply."""
    if not isinstance(node, nodes.Filter) or node.name not in ("center", "indent", "batch", "slice"):
        return
    try:
        arguments = _const_arguments(node)
    except _Unknown:
        return
    limits.check_filter(node.name, "", *arguments)


def _constant_key(node: nodes.Getitem) -> object:
    return node.arg.value if isinstance(node.arg, nodes.Const) else None


@lru_cache(maxsize=256)
def compile_template(source: str) -> jinja2.Template:
    return environment().from_string(source)


def render(template: jinja2.Template, contexts: list[dict], render_limits: RenderLimits) -> list[str]:
    """Render one cell per context, each within ``render_limits`` (``RenderLimitExceeded`` past them)."""
    saved = limits.begin(render_limits)
    budget, timeout_s, most = limits.budget(), render_limits.timeout_s, render_limits.max_output_chars
    root, new_context, concat = template.root_render_func, template.new_context, template.environment.concat
    texts = []
    try:
        for context in contexts:
            budget.deadline, budget.chars = time.monotonic() + timeout_s, 0  # each cell has its own budget
            text = concat(root(new_context(context)))
            if len(text) > most:
                limits.check_final(text)
            texts.append(text)
    finally:
        limits.end(saved)
    return texts
