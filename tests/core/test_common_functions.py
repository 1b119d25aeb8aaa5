"""Helpers for users' scripts."""
from __future__ import annotations

import pytest

import common_functions as cf
from xmmext.core.errors import UsageError
from xmmext.steps import FilterOptions, run_filtering


def test_helpers_on_a_filtered_observation(short_obs, tmp_path):
    import shutil
    wd, truth = short_obs
    shutil.copytree(wd / "data", tmp_path / "data")
    run_filtering(cf.obs_paths("0999990201", tmp_path), FilterOptions(cameras=["pn"]))
    s = cf.step_json("0999990201", "filtering", tmp_path)
    ev = cf.load_events("0999990201", "pn", tmp_path, columns=["TIME", "PI"])
    assert ev.n == s["pn"]["events_after"]
    raw = cf.load_events("0999990201", "pn", tmp_path, cleaned=False, columns=["PI"])
    assert raw.n == s["pn"]["events_before"]
    import matplotlib
    matplotlib.use("Agg")
    ax = cf.plot_light_curve(tmp_path / "results/0999990201/events/pn_lc.fits")
    assert ax.lines
    with pytest.raises(UsageError, match="has not been run"):
        cf.step_json("0999990201", "fit", tmp_path)
    p = cf.step_parser("x", "y")
    args = p.parse_args(["--obsid", "0999990201", "--force"])
    assert args.force and args.backend == "auto"
