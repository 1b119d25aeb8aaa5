"""XSPEC components (from xspectrampoline's compiled library) as sherpa models, each
evaluated once per response energy grid and re-used."""
from __future__ import annotations

import numpy as np

import xmmext.xspec.library as xm
from xmmext.core.errors import UsageError
from xmmext.xspec.expression import ModelExpression

__all__ = ["EnergyGridCache", "register_energy_grids", "evaluate_on_bins", "build_sherpa_model"]


# -------------------------------------------------------
def _sherpa_component(comp, name: str | None = None):
    """A sherpa ArithmeticModel evaluating one XSPEC component through the compiled library
    (named ``name``, default the component's XSPEC-style name)."""
    from sherpa.models.model import ArithmeticModel
    from sherpa.models.parameter import Parameter

    md = comp.definition

    class XSComponent(ArithmeticModel):
        def __init__(self):
            pars = []
            for p in md.params:
                lo = p.hard_min if p.hard_min < p.hard_max else -1e30
                hi = p.hard_max if p.hard_min < p.hard_max else 1e30
                par = Parameter(name or comp.name, p.name, p.default, min=max(p.soft_min, lo) if p.soft_min < p.soft_max else lo,
                                max=min(p.soft_max, hi) if p.soft_min < p.soft_max else hi, hard_min=lo, hard_max=hi,
                                units=p.unit, frozen=p.frozen)
                setattr(self, p.name, par)
                pars.append(par)
            if md.kind == "add":
                # soft range 0..1e3 keeps error searches finite when a component is unconstrained
                self.norm = Parameter(name or comp.name, "norm", 1.0, min=0.0, max=1e3, hard_min=0.0, hard_max=1e24)
                pars.append(self.norm)
            self.grids = EnergyGridCache(md.name)
            ArithmeticModel.__init__(self, name or comp.name, pars)

        def calc(self, p, xlo, xhi=None, *args, **kwargs):
            if xhi is None:
                raise UsageError(f"{md.name}: XSPEC models need binned (integrated) energy grids")
            npar = len(md.params)
            out = self.grids.evaluate(tuple(p[:npar]), np.asarray(xlo, float), np.asarray(xhi, float))
            return out * p[npar] if md.kind == "add" else out

    return XSComponent()


class EnergyGridCache:
    """Evaluations of one XSPEC model on the responses' full energy grids, re-used.

    sherpa asks a model for the energies each data set's noticed channels need: a
    different subset of the same response grid per camera, so a plain last-call cache
    misses on every camera. The full grids are registered once (:meth:`register`); a
    request that is a subset of one is answered from one evaluation per parameter set
    and grid, i.e. once per statistic evaluation instead of once per camera.
    """

    def __init__(self, name: str, max_values: int = 8):
        self.name = name
        self.grids: list[np.ndarray] = []
        self.max_values = max_values
        self._subsets: dict = {}
        self._values: dict = {}

    def register(self, edges: np.ndarray) -> None:
        edges = np.asarray(edges, float)
        if not any(len(g) == len(edges) and np.array_equal(g, edges) for g in self.grids):
            self.grids.append(edges)
            self._subsets.clear()

    def _subset(self, xlo: np.ndarray, xhi: np.ndarray):
        key = (xlo.tobytes(), xhi.tobytes())
        if key not in self._subsets:
            found = None
            for g, edges in enumerate(self.grids):
                i = np.searchsorted(edges, xlo)
                if np.all(i < len(edges) - 1) and np.array_equal(edges[i], xlo) and np.array_equal(edges[i + 1], xhi):
                    found = (g, i)
                    break
            self._subsets[key] = found
        return self._subsets[key]

    def evaluate(self, pars: tuple, xlo: np.ndarray, xhi: np.ndarray) -> np.ndarray:
        sub = self._subset(xlo, xhi) if self.grids else None
        if sub is None:
            return evaluate_on_bins(self.name, np.asarray(pars, float), xlo, xhi)
        g, idx = sub
        key = (g, pars)
        vals = self._values.get(key)
        if vals is None:
            if len(self._values) >= self.max_values:
                self._values.clear()
            vals = self._values[key] = xm.evaluate(self.name, np.asarray(pars, float), self.grids[g])
        return vals[idx]


def register_energy_grids(comps: dict, grids) -> None:
    """Tell every component the full response energy grids (edges) of the data sets."""
    for obj in comps.values():
        for edges in grids:
            obj.grids.register(edges)


def evaluate_on_bins(name: str, pars: np.ndarray, xlo: np.ndarray, xhi: np.ndarray) -> np.ndarray:
    """XSPEC model values on bins [xlo, xhi] that may be non-contiguous (sherpa evaluates
    only the energies its noticed channels need): evaluate on the merged edges, then
    take the requested bins."""
    if len(xlo) > 1 and np.array_equal(xlo[1:], xhi[:-1]):
        return xm.evaluate(name, pars, np.append(xlo, xhi[-1]))
    edges = np.unique(np.concatenate([xlo, xhi]))
    vals = xm.evaluate(name, pars, edges)
    i = np.searchsorted(edges, xlo)
    j = np.searchsorted(edges, xhi)
    if np.all(j == i + 1):
        return vals[i]
    cum = np.concatenate([[0.0], np.cumsum(vals)])       # a requested bin spanning several
    return cum[j] - cum[i]


def build_sherpa_model(expr: ModelExpression, prefix: str = ""):
    """The sherpa model object for the expression and {component name: sherpa component}
    (sherpa names prefixed with ``prefix``, e.g. the modelled background's sky)."""
    objs = {c.name: _sherpa_component(c, prefix + c.name if prefix else None) for c in expr.components}

    def build(node):
        if node.op == "comp":
            return objs[node.component.name]
        parts = [build(k) for k in node.children]
        out = parts[0]
        for p in parts[1:]:
            out = out * p if node.op == "*" else out + p
        return out
    return build(expr.tree), objs


# --- engine choice -----------------------------------------------------------------------------
