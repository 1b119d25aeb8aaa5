"""evselect-style filter expressions evaluated on event columns with numpy.

Supported (the subset users write for EPIC event selection):
  comparisons ``== != < <= > >=``, ``&& || !`` (also ``.and. .or. .not.``),
  bitwise ``& |``, arithmetic ``+ - * /``, decimal and hex numbers,
  ``COL in [a:b]`` (inclusive; ``(a:b)`` exclusive ends), the flag macros
  ``#XMMEA_EM``, ``#XMMEA_EP`` (and ``#XMMEA_SM``, ``#XMMEA_22``, ... where known),
  ``GTI(file.fits, TIME)`` and ``GTI(EXTNAME, TIME)`` against a GTI table,
  ``(X,Y) IN circle(x,y,r)`` / ``annulus(x,y,rin,rout)`` / ``box(x,y,w,h,angle)``.

Bitwise operators bind tighter than comparisons (so ``FLAG & 0x10000 == 0`` means what
users mean); write parentheses as evselect users do anyway.

``compile_expression(text)`` parses once and returns an :class:`Expression` with the
columns it needs (so readers can load only those) and ``evaluate(columns)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from xmmext.core.errors import UsageError
from xmmext.events.gti import in_gti
from xmmext.instrument import OUT_OF_FOV_FLAG, XMMEA_EM_MASK, XMMEA_EP_MASK

__all__ = ["MACROS", "Expression", "compile_expression"]

MACROS = {
    "XMMEA_EM": f"((FLAG & {XMMEA_EM_MASK:#x})==0)",
    "XMMEA_EP": f"((FLAG & {XMMEA_EP_MASK:#x})==0)",
    # FOV selection (not a SAS macro; handy for corner/FOV light curves)
    "INFOV": f"((FLAG & {OUT_OF_FOV_FLAG:#x})==0)",
}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<region>\(\s*X\s*,\s*Y\s*\)\s+IN\s+(?:circle|annulus|box)\s*\([^()]*\))
  | (?P<gti>GTI\(\s*[^,()]+?\s*,\s*[A-Za-z_]\w*\s*\))
  | (?P<num>0[xX][0-9a-fA-F]+|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<dotop>\.(?:and|or|not|eq|ne|lt|le|gt|ge)\.)
  | (?P<op>&&|\|\||==|!=|<=|>=|<|>|!|&|\||\+|-|\*|/|\(|\)|\[|\]|:|,)
  | (?P<macro>\#[A-Za-z_][A-Za-z0-9_]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE | re.IGNORECASE)
_DOTOPS = {".and.": "&&", ".or.": "||", ".not.": "!", ".eq.": "==", ".ne.": "!=",
           ".lt.": "<", ".le.": "<=", ".gt.": ">", ".ge.": ">="}


def _tokenize(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise UsageError(f"cannot parse filter expression at {text[pos:pos + 12]!r}")
        pos = m.end()
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "ws":
            continue
        if kind == "dotop":
            kind, val = "op", _DOTOPS[val.lower()]
        if kind == "macro":
            key = val[1:].upper()
            if key not in MACROS:
                raise UsageError(f"unknown selection macro {val!r} in filter expression")
            out.extend(_tokenize(MACROS[key]))
            continue
        out.append((kind, val))
    return out


Node = Callable[[dict], np.ndarray]


class _Parser:
    def __init__(self, text: str, gti_loader):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.columns: set[str] = set()
        self.gti_loader = gti_loader

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("end", "")

    def take(self, val: str | None = None):
        tok = self.peek()
        if val is not None and tok[1].lower() != val.lower():
            raise UsageError(f"expected {val!r} in filter expression {self.text!r}, got {tok[1] or 'end'!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_()
        if self.peek()[0] != "end":
            raise UsageError(f"unexpected {self.peek()[1]!r} in filter expression {self.text!r}")
        return node

    def or_(self):
        left = self.and_()
        while self.peek()[1] == "||":
            self.take()
            a, b = left, self.and_()
            left = lambda c, a=a, b=b: np.logical_or(a(c), b(c))
        return left

    def and_(self):
        left = self.not_()
        while self.peek()[1] == "&&":
            self.take()
            a, b = left, self.not_()
            left = lambda c, a=a, b=b: np.logical_and(a(c), b(c))
        return left

    def not_(self):
        if self.peek()[1] == "!":
            self.take()
            a = self.not_()
            return lambda c, a=a: np.logical_not(a(c))
        return self.cmp()

    def cmp(self):
        left = self.bitor()
        tok = self.peek()
        ops = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
               ">": np.greater, ">=": np.greater_equal}
        if tok[1] in ops:
            self.take()
            f, a, b = ops[tok[1]], left, self.bitor()
            return lambda c, f=f, a=a, b=b: f(a(c), b(c))
        if tok[0] == "name" and tok[1].lower() == "in":
            self.take()
            lo_open = self.take()[1]
            if lo_open not in ("[", "("):
                raise UsageError(f"expected '[' after 'in' in {self.text!r}")
            lo = self.additive()
            self.take(":")
            hi = self.additive()
            hi_close = self.take()[1]
            if hi_close not in ("]", ")"):
                raise UsageError(f"expected ']' to close range in {self.text!r}")
            lo_f = np.greater_equal if lo_open == "[" else np.greater
            hi_f = np.less_equal if hi_close == "]" else np.less
            a = left
            return lambda c, a=a, lo=lo, hi=hi, lo_f=lo_f, hi_f=hi_f: \
                np.logical_and(lo_f(a(c), lo(c)), hi_f(a(c), hi(c)))
        return left

    def bitor(self):
        left = self.bitand()
        while self.peek()[1] == "|":
            self.take()
            a, b = left, self.bitand()
            left = lambda c, a=a, b=b: np.bitwise_or(a(c), b(c))
        return left

    def bitand(self):
        left = self.additive()
        while self.peek()[1] == "&":
            self.take()
            a, b = left, self.additive()
            left = lambda c, a=a, b=b: np.bitwise_and(a(c), b(c))
        return left

    def additive(self):
        left = self.term()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            a, b = left, self.term()
            left = (lambda c, a=a, b=b: a(c) + b(c)) if op == "+" else (lambda c, a=a, b=b: a(c) - b(c))
        return left

    def term(self):
        left = self.unary()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            a, b = left, self.unary()
            left = (lambda c, a=a, b=b: a(c) * b(c)) if op == "*" else (lambda c, a=a, b=b: a(c) / b(c))
        return left

    def unary(self):
        if self.peek()[1] == "-":
            self.take()
            a = self.unary()
            return lambda c, a=a: -a(c)
        return self.atom()

    def atom(self):
        kind, val = self.take()
        if kind == "num":
            num = int(val, 16) if val.lower().startswith("0x") else (float(val) if any(ch in val for ch in ".eE") else int(val))
            return lambda c, num=num: num
        if val == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "gti":
            return self.gti_call(val)
        if kind == "region":
            return self.region_call(val)
        if kind == "name":
            col = val.upper()
            self.columns.add(col)

            def column(c, col=col):
                if col not in c:
                    raise UsageError(f"filter expression uses column {col} that the event list does not have")
                return c[col]
            return column
        raise UsageError(f"unexpected {val or 'end'!r} in filter expression {self.text!r}")

    def region_call(self, text: str):
        """``(X,Y) IN circle(x,y,r)``, ``annulus(x,y,rin,rout)`` or ``box(x,y,w,h,angle)``."""
        shape = re.search(r"\bIN\s+(\w+)", text, re.IGNORECASE).group(1).lower()
        try:
            args = [float(a) for a in text[text.rindex("(") + 1:-1].split(",")]
        except ValueError:
            raise UsageError(f"bad numbers in region {text!r}") from None
        need = {"circle": 3, "annulus": 4, "box": (4, 5)}[shape]
        if len(args) not in (need if isinstance(need, tuple) else (need,)):
            raise UsageError(f"{shape} takes {need} numbers, got {len(args)} in {text!r}")
        self.columns.update({"X", "Y"})

        def inside(c, shape=shape, a=args):
            dx, dy = np.asarray(c["X"], float) - a[0], np.asarray(c["Y"], float) - a[1]
            if shape == "circle":
                return dx * dx + dy * dy <= a[2] ** 2
            if shape == "annulus":
                d2 = dx * dx + dy * dy
                return (d2 >= a[2] ** 2) & (d2 <= a[3] ** 2)
            ang = np.deg2rad(a[4] if len(a) > 4 else 0.0)
            u = dx * np.cos(ang) + dy * np.sin(ang)
            v = -dx * np.sin(ang) + dy * np.cos(ang)
            return (np.abs(u) <= a[2] / 2) & (np.abs(v) <= a[3] / 2)
        return inside

    def gti_call(self, text: str):
        source, col = (part.strip() for part in text[text.index("(") + 1:-1].rsplit(",", 1))
        col = col.upper()
        if self.gti_loader is None:
            raise UsageError(f"GTI({source},...) needs a GTI table")
        gti = np.asarray(self.gti_loader(source), float).reshape(-1, 2)
        self.columns.add(col)
        return lambda c, col=col, gti=gti: in_gti(c[col], gti)


@dataclass
class Expression:
    text: str
    columns: frozenset
    _node: Node

    def evaluate(self, columns: dict) -> np.ndarray:
        """Boolean mask over the events (broadcast to the column length)."""
        n = len(next(iter(columns.values()))) if columns else 0
        out = self._node(columns)
        return np.broadcast_to(np.asarray(out, bool), (n,)) if np.ndim(out) == 0 else np.asarray(out, bool)


def compile_expression(text: str, gti_loader=None) -> Expression:
    """Parse an evselect-style expression once; see the module docstring for the syntax."""
    if not text or not text.strip():
        raise UsageError("empty filter expression")
    p = _Parser(text, gti_loader)
    node = p.parse()
    return Expression(text, frozenset(p.columns), node)
