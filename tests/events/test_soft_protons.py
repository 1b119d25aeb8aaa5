"""Issue 23d: residual soft protons (flat, hard, not removed by the light curve) - measured in
step 1, fitted with the source when significant (--background auto), flagged."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT, run_cli, simulate_into
from xmmext.core.paths import ObsPaths
from xmmext.steps import FilterOptions, FitOptions, RegionOptions, SpectraOptions, run_filtering, run_fit, \
    run_regions, run_spectra

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`

OBSID = "0999996301"


@pytest.fixture(scope="module")
def contaminated(tmp_path_factory):
    """The demo cluster with 10x the residual soft protons, a hard spectrum (E^-0.3), 20 ks."""
    wd = tmp_path_factory.mktemp("sp")
    truth = simulate_into(wd, obsid=OBSID, seed=4, exposure=20000.0, sp_scale=10.0, sp_index=0.3)
    paths = ObsPaths.of(OBSID, wd)
    filt = run_filtering(paths, FilterOptions())
    run_regions(paths, RegionOptions())
    run_spectra(paths, SpectraOptions())
    return truth, paths, filt


def test_step1_measures_them(contaminated):
    _, _, filt = contaminated
    for cam in ("mos1", "mos2", "pn"):
        sp = filt[cam]["soft_protons"]
        assert "De Luca & Molendi" in sp["method"] and sp["ratio"] > 1.5 and sp["significant"], (cam, sp)


def test_fitted_with_the_source_and_flagged(contaminated, tmp_path):
    """auto: the modelled background (soft protons fitted) recovers kT, and the flag says so;
    local: they are subtracted as sky, kT comes out low, and the flag says they were not modelled."""
    truth, paths, _ = contaminated
    c = truth["cluster"]
    out = {}
    for background in ("auto", "local"):
        r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--input", str(paths.spectra), "--output",
                     str(tmp_path / background), "--model", "tbabs*zbremss", "--nh", str(c["nH"]),
                     "--redshift", str(c["redshift"]), "--background", background])
        assert r.returncode == 0, r.stderr
        out[background] = json.loads((tmp_path / background / "fit.json").read_text())
        assert "FLAG soft-protons" in r.stdout
    auto, local = out["auto"], out["local"]
    assert auto["background_choice"]["used"] == "model" and "soft protons" in auto["background_choice"]["reason"]
    kt = auto["parameters"]["zbremss.kT"]
    k99 = 2.5758 / 1.6449                      # the truth inside the 99% range of the 90% interval
    assert kt["value"] - k99 * (kt["value"] - kt["lower"]) < c["kT"] < kt["value"] + k99 * (kt["upper"] - kt["value"])
    assert all("modelled" in f for f in auto["flags"] if f.startswith("soft-protons"))
    assert local["parameters"]["zbremss.kT"]["upper"] < c["kT"]            # biased low without the handling
    assert all("NOT modelled" in f for f in local["flags"] if f.startswith("soft-protons"))


def test_no_flag_without_them(processed_obs, tmp_path):
    """The default simulation (residual soft protons at the usual low level): not significant,
    the local background is used, no flag."""
    wd, truth, paths, _ = processed_obs
    filt = json.loads((paths.events / "filtering.json").read_text())
    assert not any(filt[c]["soft_protons"]["significant"] for c in ("mos1", "mos2", "pn"))
    c = truth["cluster"]
    fit = run_fit(paths.spectra, tmp_path / "fit", FitOptions(model="tbabs*zbremss", nh=c["nH"], redshift=c["redshift"]))
    assert fit["background_choice"]["used"] == "local"
    assert not any(f.startswith("soft-protons") for f in fit["flags"])
