"""A derived sensor's expression: parsed into a small typed tree, rendered to SQL from it.

The grammar (README, "Derived sensors"), by precedence, loosest first:

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary)*
    unary   := ('-' | '+') unary | power
    power   := atom ('^' unary)?              # right-associative: 2^3^2 = 2^(3^2)
    atom    := NUMBER | ALIAS | FUNCTION '(' expr (',' expr)* ')' | '(' expr ')'

Nothing of the user's text reaches SQL: the tree holds numbers (as floats), alias names
(rendered as the generated column names of their aggregates) and functions from a fixed
table. Domain errors are NULL in both dialects (division by zero, sqrt of a negative,
ln/log10 of a non-positive number, a negative base to a fractional power): DuckDB and
Postgres disagree on them otherwise (NaN, NULL or an error), and parity must not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

Dialect = Literal["duckdb", "postgres"]

# name -> (min args, max args)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "abs": (1, 1), "sqrt": (1, 1), "exp": (1, 1), "ln": (1, 1), "log10": (1, 1),
    "power": (2, 2), "least": (1, 64), "greatest": (1, 64), "round": (1, 2),
}
_TOKEN = re.compile(r"\s*(?:(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/^(),]))")


class ExpressionError(ValueError):
    """The expression is not in the grammar; the message says where and what."""


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Alias:
    name: str


@dataclass(frozen=True)
class Unary:
    op: Literal["-"]
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: Literal["+", "-", "*", "/", "^"]
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]


Node: TypeAlias = "Number | Alias | Unary | Binary | Call"


def parse(text: str, aliases: set[str]) -> Node:
    """The tree of `text`; an ExpressionError names the first thing outside the grammar."""
    tokens = _tokenize(text)
    parser = _Parser(tokens, aliases)
    node = parser.expr()
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()!r} after a complete expression")
    return node


def aliases_used(node: Node) -> set[str]:
    if isinstance(node, Alias):
        return {node.name}
    if isinstance(node, Unary):
        return aliases_used(node.operand)
    if isinstance(node, Binary):
        return aliases_used(node.left) | aliases_used(node.right)
    if isinstance(node, Call):
        return set().union(*(aliases_used(arg) for arg in node.args))
    return set()


def render(node: Node, dialect: Dialect, column: Callable[[str], str]) -> str:
    """SQL for `node` in `dialect`; `column(alias)` is the SQL of an alias's aggregate (a
    DOUBLE). Every operation is on doubles, parenthesised as the tree says."""
    def go(item: Node) -> str:
        return render(item, dialect, column)

    double = "double" if dialect == "duckdb" else "double precision"
    if isinstance(node, Number):
        return f"cast({node.value!r} as {double})"
    if isinstance(node, Alias):
        return column(node.name)
    if isinstance(node, Unary):
        return f"(- {go(node.operand)})"
    if isinstance(node, Binary):
        left, right = go(node.left), go(node.right)
        if node.op == "/":
            return f"({left} / nullif({right}, 0))"
        if node.op == "^":
            return _power(left, right)
        return f"({left} {node.op} {right})"
    args = [go(arg) for arg in node.args]
    name = node.function
    if name == "sqrt":
        return f"(case when {args[0]} < 0 then null else sqrt({args[0]}) end)"
    if name in ("ln", "log10"):
        return f"(case when {args[0]} <= 0 then null else {name}({args[0]}) end)"
    if name == "power":
        return _power(args[0], args[1])
    if name == "round":
        digits = args[1] if len(args) > 1 else "0"
        if dialect == "postgres":  # Postgres rounds doubles only to whole numbers
            return (f"cast(round(cast({args[0]} as numeric), cast({digits} as integer)) "
                    f"as {double})")
        return f"round({args[0]}, cast({digits} as integer))"
    return f"{name}({', '.join(args)})"


def _power(base: str, exponent: str) -> str:
    return (f"(case when ({base} < 0 and {exponent} <> trunc({exponent})) or "
            f"({base} = 0 and {exponent} < 0) then null else power({base}, {exponent}) end)")


def _tokenize(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            bad = text[position:].lstrip()[:1]
            if bad == ";":
                raise ExpressionError("';' is not allowed (one expression, no statements)")
            raise ExpressionError(f"unexpected character {bad!r} at position "
                                  f"{len(text) - len(text[position:].lstrip()) + 1}")
        tokens.append(match.group(match.lastgroup or 0))
        position = match.end()
    if not tokens:
        raise ExpressionError("the expression is empty")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str], aliases: set[str]) -> None:
        self.tokens, self.position, self.aliases = tokens, 0, aliases

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise ExpressionError(f"the expression ends where {expected or 'a value'} "
                                  "is expected")
        if expected is not None and token != expected:
            raise ExpressionError(f"expected {expected!r}, found {token!r}")
        self.position += 1
        return token

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = Binary("+" if op == "+" else "-", node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            node = Binary("*" if op == "*" else "/", node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == "-":
            self.take()
            return Unary("-", self.unary())
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Node:
        node = self.atom()
        if self.peek() == "^":
            self.take()
            node = Binary("^", node, self.unary())
        return node

    def atom(self) -> Node:
        token = self.take()
        if token == "(":
            node = self.expr()
            self.take(")")
            return node
        if token[0].isdigit() or token[0] == ".":
            value = float(token)
            if not math.isfinite(value):
                raise ExpressionError(f"number {token} is out of range")
            return Number(value)
        if token[0].isalpha() or token[0] == "_":
            if self.peek() == "(":
                return self.call(token)
            if token.lower() == "select":
                raise ExpressionError("subqueries are not allowed")
            if token not in self.aliases:
                raise ExpressionError(f"unknown alias {token!r} (inputs: "
                                      f"{', '.join(sorted(self.aliases)) or 'none'})")
            return Alias(token)
        raise ExpressionError(f"unexpected {token!r} where a value is expected")

    def call(self, name: str) -> Node:
        function = name.lower()
        if function not in FUNCTIONS:
            raise ExpressionError(f"function {name!r} is not allowed (allowed: "
                                  f"{', '.join(FUNCTIONS)})")
        self.take("(")
        if self.peek() is not None and self.peek().lower() == "select":  # type: ignore[union-attr]
            raise ExpressionError("subqueries are not allowed")
        args = [self.expr()]
        while self.peek() == ",":
            self.take()
            args.append(self.expr())
        self.take(")")
        low, high = FUNCTIONS[function]
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(f"{function}() takes {wanted} argument(s), got {len(args)}")
        return Call(function, tuple(args))
