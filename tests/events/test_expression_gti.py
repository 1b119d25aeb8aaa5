"""evselect-style expressions and GTI arithmetic."""
from __future__ import annotations

import numpy as np
import pytest

import xmmext.events.gti as G
from xmmext.core.errors import UsageError
from xmmext.events.selection import compile_expression

COLS = {
    "PI": np.array([100, 500, 10500, 11500, 12500]),
    "PATTERN": np.array([0, 4, 0, 13, 0]),
    "FLAG": np.array([0, 0x80000, 0x1, 0x10000, 0]),
    "TIME": np.array([0.0, 10.0, 20.0, 30.0, 40.0]),
}


@pytest.mark.parametrize("expr,expected", [
    ("PI>10000 && PATTERN==0", [0, 0, 1, 0, 1]),
    ("(PI>10000 && PI<12000) && (PATTERN==0)", [0, 0, 1, 0, 0]),
    ("#XMMEA_EM", [1, 0, 1, 0, 1]),
    ("#XMMEA_EP", [1, 0, 1, 1, 1]),          # 0x10000 is not in the pn mask
    ("#XMMEA_EM && PATTERN<=12 && FLAG==0", [1, 0, 0, 0, 1]),
    ("PI in [500:11500]", [0, 1, 1, 1, 0]),
    ("PI in (500:11500)", [0, 0, 1, 0, 0]),
    ("(FLAG & 0x10000)!=0", [0, 0, 0, 1, 0]),
    ("FLAG & 0x10000 == 0", [1, 1, 1, 0, 1]),
    ("!(PATTERN==0) || PI<200", [1, 1, 0, 1, 0]),
    ("PATTERN.le.4 .and. PI.gt.400", [0, 1, 1, 0, 1]),
    ("PI/1000 > 11", [0, 0, 0, 1, 1]),
])
def test_expression_semantics(expr, expected):
    e = compile_expression(expr)
    assert e.evaluate(COLS).astype(int).tolist() == expected


def test_region_predicates():
    cols = {"X": np.array([0.0, 3.0, 6.0, 10.0]), "Y": np.zeros(4)}
    assert compile_expression("(X,Y) IN circle(0,0,5)").evaluate(cols).tolist() == [True, True, False, False]
    assert compile_expression("((X,Y) IN annulus(0,0,5,8)) && !((X,Y) IN circle(6,0,0.5))").evaluate(cols).tolist() \
        == [False, False, False, False]
    assert compile_expression("(X,Y) in box(5,0,4,2,0)").evaluate(cols).tolist() == [False, True, True, False]
    with pytest.raises(UsageError):
        compile_expression("(X,Y) IN circle(1,2)")


def test_expression_reports_columns_and_gti():
    e = compile_expression("#XMMEA_EP && GTI(g.fits,TIME)", gti_loader=lambda src: [[5, 25]])
    assert e.columns == {"FLAG", "TIME"}
    assert e.evaluate(COLS).astype(int).tolist() == [0, 0, 1, 0, 0]


@pytest.mark.parametrize("bad", ["PI >", "#NOPE", "PI in [1:", "PI )", "", "PI @ 3"])
def test_bad_expressions_are_usage_errors(bad):
    with pytest.raises(UsageError):
        compile_expression(bad).evaluate(COLS)


def test_gti_arithmetic():
    a = [[0, 10], [20, 30], [5, 12]]
    assert G.normalise(a).tolist() == [[0, 12], [20, 30]]
    assert G.intersect(a, [[8, 25]]).tolist() == [[8, 12], [20, 25]]
    assert G.total(G.normalise(a)) == 22
    assert G.in_gti([0, 11.9, 12, 19, 29.9, 30], a).tolist() == [True, True, False, False, True, False]
    assert G.drop_short([[0, 5], [10, 100]], 10).tolist() == [[10, 100]]
    edges = np.array([0, 10, 20, 30, 40])
    assert G.overlap_per_bin(edges, [[5, 12], [25, 26], [35, 50]]).tolist() == [5, 2, 1, 5]


def test_light_curve_corrects_for_partial_bins():
    t = np.arange(0, 150, 0.5)              # 2 ct/s for 150 s
    lc = G.light_curve(t, 0.0, 200.0, [[0, 150]], binsize=100.0)
    assert lc.exposure.tolist() == [100.0, 50.0]
    assert np.allclose(lc.rate, [2.0, 2.0])
