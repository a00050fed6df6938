"""Conditions of routing rules: a small, typed expression language over request arguments.

A rule's condition such as ``width * height <= 1048576`` or ``lora in ["anime", "ink"]`` is
parsed once when the route is saved (and again when a router loads it), checked against
the route's declared arguments and their types, and compiled into a tree of closures. It
is **never** ``eval``-ed: Python's parser (:func:`ast.parse`) only builds the syntax tree,
and every node outside a short allow-list is refused.

Grammar (Python's syntax, a small part of it):

* literals: numbers, strings in quotes, ``true`` / ``false``, lists of literals ``[...]``;
* argument names (top-level keys of the request's ``arguments``), declared with a type
  ``number``, ``string`` or ``boolean``;
* arithmetic on numbers ``+ - * / // %`` and unary ``-``; ``+`` also joins strings;
* comparisons ``< <= > >= == !=`` (chains like ``0 < width <= 512`` too), ``in`` /
  ``not in`` a list or, for strings, a substring;
* ``and``, ``or``, ``not``; parentheses;
* functions ``len(string)``, ``min(a, b, ...)``, ``max(a, b, ...)``, ``abs(number)``,
  ``lower(string)``.

A condition must be boolean. At run time an argument the request lacks takes its
declared default; without one, or with a value of the wrong type, the evaluation raises
:class:`EvaluationError` (the router answers 422), as does a division by zero.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from abplatform.core.errors import InvalidInputError

ArgType = Literal["number", "string", "boolean"]
ARG_TYPES: tuple[str, ...] = ("number", "string", "boolean")
MAX_LENGTH = 500
"""Longest condition (characters)."""
MAX_NODES = 200
"""Most syntax-tree nodes in one condition."""

Env = Mapping[str, Any]
Fn = Callable[[Env], Any]
Type = str  # "number" | "string" | "boolean" | "list:<type>"


class ExpressionError(InvalidInputError):
    """A condition cannot be saved: bad syntax, an unknown argument or function, or types
    that do not fit. The message quotes the condition and says what is allowed."""


class EvaluationError(InvalidInputError):
    """A request's arguments cannot be evaluated against a condition (missing argument,
    wrong type, division by zero): the caller's mistake, answered with 422."""


@dataclass(frozen=True)
class Argument:
    """A declared request argument: its ``type`` and the ``default`` used when a request
    lacks it (None: the argument is required by any condition that reads it)."""

    name: str
    type: ArgType
    default: Any = None


def check_value(arg: Argument, value: Any) -> Any:
    """``value`` if it has ``arg``'s type (numbers are int or float, never bool).

    Raises:
        EvaluationError: it has another type (the message names the argument and type).
    """
    ok = {
        "number": isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(value),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
    }[arg.type]  # fmt: skip
    if not ok:
        shown = repr(value)[:60]
        raise EvaluationError(f"argument '{arg.name}' must be a {arg.type}, got {shown}")
    return value


_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}  # fmt: skip
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
_SYMBOL = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.In: "in", ast.NotIn: "not in",
}  # fmt: skip
FUNCTIONS = ("len", "min", "max", "abs", "lower")
ALLOWED = (
    "numbers, strings in quotes, true/false, lists [..], declared arguments, + - * / // %, "
    "< <= > >= == != in, and/or/not, parentheses, len() min() max() abs() lower()"
)


class _Compiler:
    """Checks types and builds closures for one condition (see the module docstring)."""

    def __init__(self, text: str, arguments: Mapping[str, Argument]) -> None:
        self.text = text
        self.arguments = arguments

    def fail(self, what: str, node: ast.AST | None = None) -> ExpressionError:
        where = f" at column {node.col_offset + 1}" if isinstance(node, ast.expr) else ""
        return ExpressionError(f"condition {self.text!r}: {what}{where}")

    def compile(self, node: ast.AST) -> tuple[Fn, Type]:
        """A closure computing ``node`` from the arguments, and its type."""
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.List | ast.Tuple):
            return self._list(node)
        if isinstance(node, ast.BoolOp):
            return self._boolop(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise self.fail(f"{type(node).__name__.lower()} is not allowed; allowed: {ALLOWED}", node)

    def _constant(self, node: ast.Constant) -> tuple[Fn, Type]:
        value = node.value
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int | float):
            kind = "number"
        elif isinstance(value, str):
            kind = "string"
        else:
            raise self.fail(f"the literal {value!r} is not allowed", node)
        return (lambda env: value), kind

    def _name(self, node: ast.Name) -> tuple[Fn, Type]:
        if node.id in ("true", "false", "True", "False"):
            value = node.id in ("true", "True")
            return (lambda env: value), "boolean"
        arg = self.arguments.get(node.id)
        if arg is None:
            known = ", ".join(self.arguments) or "none declared"
            raise self.fail(f"unknown argument '{node.id}' (declared arguments: {known})", node)
        name = node.id

        def read(env: Env) -> Any:
            value = env.get(name, arg.default)
            if value is None:
                raise EvaluationError(f"argument '{name}' is required (no default is declared)")
            return check_value(arg, value)

        return read, arg.type

    def _list(self, node: ast.List | ast.Tuple) -> tuple[Fn, Type]:
        items = [self.compile(e) for e in node.elts]
        kinds = {k for _, k in items}
        if len(kinds) > 1 or any(k.startswith("list") for k in kinds):
            raise self.fail("a list must hold literals of one type", node)
        if not all(isinstance(e, ast.Constant) for e in node.elts):
            raise self.fail("a list may hold only literals", node)
        values = tuple(fn({}) for fn, _ in items)
        return (lambda env: values), f"list:{kinds.pop() if kinds else 'number'}"

    def _boolop(self, node: ast.BoolOp) -> tuple[Fn, Type]:
        parts = [self._expect(v, "boolean", "and/or") for v in node.values]
        if isinstance(node.op, ast.And):
            return (lambda env: all(p(env) for p in parts)), "boolean"
        return (lambda env: any(p(env) for p in parts)), "boolean"

    def _unary(self, node: ast.UnaryOp) -> tuple[Fn, Type]:
        if isinstance(node.op, ast.Not):
            inner = self._expect(node.operand, "boolean", "not")
            return (lambda env: not inner(env)), "boolean"
        if isinstance(node.op, ast.USub | ast.UAdd):
            inner = self._expect(node.operand, "number", "unary -")
            sign = -1 if isinstance(node.op, ast.USub) else 1
            return (lambda env: sign * inner(env)), "number"
        raise self.fail("this unary operator is not allowed", node)

    def _operator_column(self, node: ast.BinOp) -> str:
        """ " at column N" of ``node``'s operator (the first character after its left
        operand that is not a space or a closing parenthesis)."""
        end = node.left.end_col_offset
        if end is None:
            return ""
        rest = self.text[end:]
        skipped = len(rest) - len(rest.lstrip(" )"))
        return f" at column {end + skipped + 1}"

    def _binop(self, node: ast.BinOp) -> tuple[Fn, Type]:
        op = _ARITH.get(type(node.op))
        at = self._operator_column(node)
        if op is None:
            raise ExpressionError(
                f"condition {self.text!r}: operator not allowed{at}; allowed: {ALLOWED}"
            )
        left, lk = self.compile(node.left)
        right, rk = self.compile(node.right)
        if isinstance(node.op, ast.Add) and lk == rk == "string":
            return (lambda env: left(env) + right(env)), "string"
        if lk != "number" or rk != "number":
            raise ExpressionError(
                f"condition {self.text!r}: '{_SYMBOL[type(node.op)]}' needs numbers, got {lk} "
                f"and {rk}{at}"
            )
        divisor = node.right
        if (
            isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod)
            and isinstance(divisor, ast.Constant)
            and divisor.value == 0
        ):
            raise ExpressionError(
                f"condition {self.text!r} divides by the constant 0{at}: every request would fail"
            )

        def arith(env: Env) -> Any:
            try:
                return op(left(env), right(env))
            except ZeroDivisionError:
                raise EvaluationError(f"condition {self.text!r} divides by zero") from None

        return arith, "number"

    def _compare(self, node: ast.Compare) -> tuple[Fn, Type]:
        fns: list[Fn] = []
        kinds: list[Type] = []
        for operand in (node.left, *node.comparators):
            fn, kind = self.compile(operand)
            fns.append(fn)
            kinds.append(kind)
        ops = []
        for i, op in enumerate(node.ops):
            left, right = kinds[i], kinds[i + 1]
            self._check_comparison(op, left, right, node)
            ops.append(_COMPARE[type(op)])

        def compare(env: Env) -> bool:
            value = fns[0](env)
            for op_fn, fn in zip(ops, fns[1:], strict=True):
                nxt = fn(env)
                if not op_fn(value, nxt):
                    return False
                value = nxt
            return True

        return compare, "boolean"

    def _check_comparison(self, op: ast.cmpop, left: Type, right: Type, node: ast.AST) -> None:
        symbol = _SYMBOL.get(type(op))
        if symbol is None:
            raise self.fail(f"comparison not allowed; allowed: {ALLOWED}", node)
        if isinstance(op, ast.In | ast.NotIn):
            if right == f"list:{left}" or (left == right == "string"):
                return
            raise self.fail(f"'{symbol}' needs a {left} and a list of {left}s, got {right}", node)
        if left != right or left.startswith("list"):
            raise self.fail(f"cannot compare {left} {symbol} {right}", node)
        if left == "boolean" and symbol not in ("==", "!="):
            raise self.fail(f"booleans compare only with == and !=, not {symbol}", node)

    def _call(self, node: ast.Call) -> tuple[Fn, Type]:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS or node.keywords:
            raise self.fail(f"unknown function; allowed: {', '.join(FUNCTIONS)}", node)
        args = [self.compile(a) for a in node.args]
        kinds = [k for _, k in args]
        fns = [f for f, _ in args]
        if name in ("len", "lower"):
            if kinds != ["string"]:
                raise self.fail(f"{name}() takes one string", node)
            if name == "len":
                return (lambda env: len(fns[0](env))), "number"
            return (lambda env: fns[0](env).lower()), "string"
        if name == "abs":
            if kinds != ["number"]:
                raise self.fail("abs() takes one number", node)
            return (lambda env: abs(fns[0](env))), "number"
        if len(kinds) < 2 or set(kinds) != {"number"}:
            raise self.fail(f"{name}() takes two or more numbers", node)
        pick = min if name == "min" else max
        return (lambda env: pick(f(env) for f in fns)), "number"

    def _expect(self, node: ast.AST, kind: Type, where: str) -> Fn:
        fn, got = self.compile(node)
        if got != kind:
            raise self.fail(f"{where} needs a {kind}, got {got}", node)
        return fn


@dataclass(frozen=True)
class Condition:
    """A compiled condition: its text, the arguments it reads, and :meth:`evaluate`."""

    text: str
    reads: tuple[str, ...]
    _fn: Fn

    def evaluate(self, arguments: Env) -> bool:
        """Whether ``arguments`` (the request's JSON object) satisfy the condition.

        Raises:
            EvaluationError: an argument it reads is missing without a default or has the
                wrong type, or it divides by zero.
        """
        return bool(self._fn(arguments))


def compile_condition(text: str, arguments: Mapping[str, Argument]) -> Condition:
    """Parse, type-check and compile ``text`` against the declared ``arguments``.

    Raises:
        ExpressionError: empty or too long (over :data:`MAX_LENGTH` characters or
            :data:`MAX_NODES` nodes), bad syntax, a construct outside the language, an
            unknown argument or function, types that do not fit, or not boolean.
    """
    text = text.strip()
    if not text:
        raise ExpressionError("a condition must not be empty (omit it for a catch-all rule)")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"a condition has at most {MAX_LENGTH} characters, got {len(text)}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        column = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"condition {text!r} is not valid: {exc.msg}{column}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"condition {text!r} is too complex (over {MAX_NODES} nodes)")
    compiler = _Compiler(text, arguments)
    fn, kind = compiler.compile(tree.body)
    if kind != "boolean":
        raise ExpressionError(f"condition {text!r} is a {kind}; it must be true or false")
    reads = tuple(sorted({n.id for n in nodes if isinstance(n, ast.Name) and n.id in arguments}))
    return Condition(text, reads, fn)


__all__ = [
    "ARG_TYPES",
    "MAX_LENGTH",
    "ArgType",
    "Argument",
    "Condition",
    "EvaluationError",
    "ExpressionError",
    "check_value",
    "compile_condition",
]
