"""XSPEC model expressions: ``tbabs*(apec+powerlaw)``, ``phabs(bbodyrad + powerlaw)``.

Parsed once into a small tree, with components named as XSPEC names them (``TBabs``,
``apec``, ``powerlaw``; a repeated component gets ``_2``, ``_3``). Both fitting
engines build their model from this tree, so parameter names agree everywhere:
``apec.kT``, ``powerlaw.PhoIndex``, ``TBabs.nH``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from xmmext.core.errors import UsageError
from xmmext.xspec.library import ModelDef, model_def

__all__ = ["MAX_EXPRESSION_CHARS", "MAX_NESTING", "ABSORBERS", "Component", "Node", "ModelExpression",
           "parse_model"]

MAX_EXPRESSION_CHARS = 2000
MAX_NESTING = 32               # XSPEC expressions in practice nest 2-3 deep

# photo-absorption components (their nH is the Galactic column given by --nh; left out of
# unabsorbed fluxes)
ABSORBERS = {"tbabs", "phabs", "wabs", "tbgrain", "tbvarabs", "ztbabs", "zphabs", "zwabs", "tbpcf", "pcfabs"}


@dataclass
class Component:
    name: str             # unique name: XSPEC name plus _2, _3 for repeats
    definition: ModelDef

    @property
    def xspec_name(self) -> str:
        return self.definition.name

    @property
    def kind(self) -> str:
        return self.definition.kind

    def parameter_names(self) -> list[str]:
        names = [p.name for p in self.definition.params]
        return names + (["norm"] if self.kind == "add" else [])


@dataclass
class Node:
    op: str                        # 'comp', '*', '+'
    component: Component | None = None
    children: list = field(default_factory=list)


@dataclass
class ModelExpression:
    text: str
    tree: Node
    components: list[Component]

    def parameters(self) -> list[str]:
        """'<component>.<par>' in XSPEC order."""
        return [f"{c.name}.{p}" for c in self.components for p in c.parameter_names()]

    def xspec_string(self) -> str:
        """The expression with XSPEC's own component names (for PyXspec and .xcm)."""
        def fmt(n: Node, parent: str | None = None) -> str:
            if n.op == "comp":
                return n.component.xspec_name
            inner = n.op.join(fmt(c, n.op) for c in n.children)
            return f"({inner})" if parent == "*" and n.op == "+" else inner
        return fmt(self.tree)


_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z][A-Za-z0-9_]*)|(?P<op>[*+()]))")


def parse_model(text: str) -> ModelExpression:
    """Parse an XSPEC model expression (exit 2 on unknown components or bad syntax)."""
    tokens, pos = [], 0
    text = (text or "").strip()
    depth = max_depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        max_depth = max(max_depth, depth)
    if max_depth > MAX_NESTING:
        raise UsageError(f"model expression nested deeper than {MAX_NESTING} parentheses")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise UsageError(f"model expression longer than {MAX_EXPRESSION_CHARS} characters")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"cannot parse model expression at {text[pos:pos + 10]!r}")
        tokens.append(("name", m.group("name")) if m.group("name") else ("op", m.group("op")))
        pos = m.end()
    if not tokens:
        raise UsageError("empty model expression")
    comps: list[Component] = []
    counts: dict[str, int] = {}
    i = 0

    def peek():
        return tokens[i] if i < len(tokens) else ("end", "")

    def take(val=None):
        nonlocal i
        tok = peek()
        if val is not None and tok[1] != val:
            raise UsageError(f"expected {val!r} in model expression {text!r}")
        i += 1
        return tok

    def expr():
        node = term()
        kids = [node]
        while peek()[1] == "+":
            take()
            kids.append(term())
        return kids[0] if len(kids) == 1 else Node("+", children=kids)

    def term():
        kids = [factor()]
        while peek()[1] == "*" or peek()[1] == "(" or peek()[0] == "name":
            if peek()[1] == "*":
                take()
            kids.append(factor())      # 'phabs(apec)' is phabs*apec, as in XSPEC
        return kids[0] if len(kids) == 1 else Node("*", children=kids)

    def factor():
        tok = take()
        if tok[1] == "(":
            node = expr()
            take(")")
            return node
        if tok[0] != "name":
            raise UsageError(f"unexpected {tok[1] or 'end'!r} in model expression {text!r}")
        md = model_def(tok[1])
        if md.kind not in ("add", "mul"):
            raise UsageError(f"component {md.name} is a {md.kind} model; only additive and "
                             "multiplicative components are supported")
        counts[md.name] = counts.get(md.name, 0) + 1
        name = md.name if counts[md.name] == 1 else f"{md.name}_{counts[md.name]}"
        comp = Component(name, md)
        comps.append(comp)
        return Node("comp", component=comp)

    tree = expr()
    if i != len(tokens):
        raise UsageError(f"unexpected {tokens[i][1]!r} in model expression {text!r}")
    if not any(c.kind == "add" for c in comps):
        raise UsageError(f"model {text!r} has no additive component")
    return ModelExpression(text, tree, comps)
