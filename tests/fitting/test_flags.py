"""Issue 23c: a doubtful fit says so - flags in fit.json, on the terminal, in the report,
the multi table and every annulus of a profile."""
from __future__ import annotations

import pytest

import json
import shutil

import numpy as np
from astropy.io import fits

from conftest import ROOT, run_cli
from xmmext.fitting.flags import fit_flags, row_flags

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`


def _par(value, lower, upper, limits=(0.0, 100.0), frozen=False):
    return {"value": value, "lower": lower, "upper": upper, "frozen": frozen, "unit": "", "limits": list(limits)}


def test_flags_of_a_result():
    good = {"energy_range_keV": [0.5, 7.0], "statistic": {"value": 300.0, "dof": 290},
            "parameters": {"apec.kT": _par(5.0, 4.6, 5.4), "apec.norm": _par(1e-3, 9e-4, 1.1e-3, (0, 1e3)),
                           "TBabs.nH": _par(0.03, None, None, frozen=True)},
            "goodness_expected": {"p_value": 0.4, "expected": 290.0, "sigma": 24.0}}
    assert fit_flags(good) == []
    bad = json.loads(json.dumps(good))
    bad["parameters"]["apec.kT"] = _par(64.0, 20.0, None, (0.0808, 64.0))
    bad["parameters"]["apec.norm"] = _par(1e-4, 1e-5, 5e-4, (0, 1e3))
    bad["parameters"]["cross_norm.pn"] = _par(0.2, 0.2, 0.21, (0.2, 5.0))
    bad["parameters"]["powerlaw.norm"] = _par(0.0, 0.0, 1e-5, (0, 1e3))
    bad["statistic"] = {"value": 480.0, "dof": 290}
    bad["goodness_expected"] = {"p_value": 1e-6, "expected": 290.0, "sigma": 24.0}
    bad["without_component"] = {"powerlaw": {"delta_stat": 12.0, "values": {"apec.kT": 7.0}}}
    codes = [f.split(":")[0] for f in fit_flags(bad, undetected=("powerlaw.norm",))]
    assert codes.count("at-limit") == 2 and "open-interval" in codes and "kT-unmeasurable" in codes
    assert "wide-interval" in codes and "poor-fit" in codes and "goodness" in codes
    assert not any("powerlaw.norm" in f for f in fit_flags(bad, undetected=("powerlaw.norm",)))
    bad["parameters"]["apec.kT"] = _par(5.0, 4.6, 5.4)
    assert any(f.startswith("model-dependent: apec.kT = 5") for f in fit_flags(bad))


def test_row_flags_use_the_final_values():
    fit = {"energy_range_keV": [0.5, 7.0], "flags": ["poor-fit: x", "at-limit: zbremss.kT = 100"],
           "parameters": {"zbremss.kT": _par(100.0, 50.0, None, (1e-4, 100.0)),
                          "zbremss.norm": _par(1e-3, 9e-4, 1.1e-3, (0, 1e3))}}
    row = {"kT": {"value": 22.0, "lower": 11.0, "upper": 34.0}, "norm": {"value": 1e-3, "lower": 9e-4, "upper": 1.1e-3}}
    flags = row_flags(row, fit, (("kT", "kT"), ("norm", "norm")))
    assert flags[0] == "poor-fit: x" and not any(f.startswith("at-limit") for f in flags)
    assert any(f.startswith("wide-interval: zbremss.kT = 22") for f in flags)
    assert any(f.startswith("kT-unmeasurable: zbremss.kT = 22") for f in flags)


def test_a_fit_driven_to_a_limit_is_flagged_everywhere(processed_obs, tmp_path):
    """pn's ARF ten times too large drives its cross-normalisation to its lower limit
    (0.2): flagged in fit.json, fit.xcm, on the terminal and in report.html."""
    wd, truth, paths, _ = processed_obs
    w = tmp_path / "w"
    shutil.copytree(paths.results, w / "results" / paths.obsid)
    spectra = w / "results" / paths.obsid / "spectra"
    with fits.open(spectra / "pn.arf") as h:
        h["SPECRESP"].data["SPECRESP"] = np.asarray(h["SPECRESP"].data["SPECRESP"]) * 10
        h.writeto(tmp_path / "pn_x10.arf")
    r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--input", str(spectra), "--nh", "0.03",
                 "--redshift", "0.05", "--model", "tbabs*zbremss", "--arf", f"pn={tmp_path / 'pn_x10.arf'}"])
    assert r.returncode == 0, r.stderr
    fit = json.loads((w / "results" / paths.obsid / "fit" / "fit.json").read_text())
    flag = next(f for f in fit["flags"] if f.startswith("at-limit: cross_norm.pn"))
    assert "FLAG " + flag in r.stdout
    assert "# flag: " + flag in (w / "results" / paths.obsid / "fit" / "fit.xcm").read_text()
    from xmmext.core.paths import ObsPaths
    from xmmext.steps import ReportOptions, ReportStep, execute
    execute(ReportStep().plan(ObsPaths.of(paths.obsid, w), ReportOptions(name="flagged")))
    page = (w / "results" / paths.obsid / "report.html").read_text()
    assert "doubtful" in page and "at-limit: cross_norm.pn" in page
