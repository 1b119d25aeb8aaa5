"""SAS-cleaned event lists (the simulator's --sas-cleaned variant, with known truth).

The same layout as the real A907 lists (tests/test_real_data.py): screened, FLAG==0, no
corner events, the flare GTI as GTI00n06 tables named by the DSS keywords, a SAS/XGA file
name. Step 1 must recognise and keep them; the particle background must then come from
the 10-12 keV band with the measured template and match the truth labels.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from conftest import simulate_into
from xmmext.steps import FilterOptions, run_filtering
from xmmext.core.paths import ObsPaths
from xmmext.steps import RegionOptions, run_regions
from xmmext.sky.extraction_region import read_ds9
from xmmext.steps import SpectraOptions, run_spectra

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`

OBSID = "0999995101"


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    wd = tmp_path_factory.mktemp("cleaned")
    truth = simulate_into(wd, obsid=OBSID, seed=21, exposure=30000.0, sas_cleaned=True,
                          cameras=["mos2", "pn"])
    paths = ObsPaths.of(OBSID, wd)
    filt = run_filtering(paths, FilterOptions(cameras=["mos2", "pn"]))
    run_regions(paths, RegionOptions(cameras=("mos2", "pn")))
    spec = run_spectra(paths, SpectraOptions(cameras=("mos2", "pn")))
    return truth, paths, filt, spec


def test_recognised_kept_and_live_time(cleaned):
    truth, paths, filt, _ = cleaned
    flares = np.array(truth["flares"]).reshape(-1, 2)
    quiet = truth["exposure_s"] - float(np.sum(np.diff(flares, axis=1)))
    for cam in ("mos2", "pn"):
        assert paths.event_dir.joinpath(f"{cam}_exp1_clean_evts.fits").exists()
        rec = filt[cam]
        assert rec["prefiltered"] and rec["method"] == "input"
        assert rec["events_after"] == rec["events_before"]
        live = fits.getheader(truth["files"][cam], "EVENTS")["LIVETIME"]
        assert rec["exposure_after_s"] == pytest.approx(live, rel=1e-6)
        assert live == pytest.approx(quiet * {"mos2": 0.9845, "pn": 0.9930}[cam], rel=1e-6)


def test_particle_level_without_corners_matches_truth(cleaned):
    truth, paths, _, spec = cleaned
    for cam in ("mos2", "pn"):
        s = spec["cameras"][cam]
        assert "no corner events" in s["particle_background"] and s["corner_counts"] == 0
        d = fits.getdata(truth["files"][cam], "EVENTS")
        lab = np.load(paths.data / f"truth_{cam}_components.npy")
        inb = read_ds9(paths.regions / "bkg.reg").contains(d["X"], d["Y"])
        true_qpb = np.count_nonzero(inb & (lab == truth["component_codes"]["qpb"]))
        n_ref = np.count_nonzero(inb & (d["PI"] >= 10000) & (d["PI"] <= 12000))
        err = 4.0 / np.sqrt(n_ref) + 0.02           # Poisson of the 10-12 keV level + template bins
        assert abs(s["particle_counts_bkg_region"] / true_qpb - 1) < err, (cam, s["particle_counts_bkg_region"], true_qpb)
        reg = json.loads((paths.regions / "regions.json").read_text())
        assert "10-12 keV" in reg["particle_background"][cam]["from"]


def test_soft_proton_measure_without_corners(cleaned):
    """Issue 23d: without corners, step 1 measures the outer field's 2.5-8.5 keV counts over
    the particle template + CXB; the default residual soft protons are not significant."""
    _, paths, filt, spec = cleaned
    for cam in ("mos2", "pn"):
        sp = filt[cam]["soft_protons"]
        assert "no corners" in sp["method"] and 0.8 < sp["ratio"] < 1.3 and not sp["significant"]
        with fits.open(paths.spectra / f"{cam}_src_grp.pha") as h:
            assert h["SPECTRUM"].header["SPRATIO"] == pytest.approx(sp["ratio"], abs=1e-4)


def test_modelled_background_without_corners_is_stable(cleaned, tmp_path):
    """Issue 23e: no corner events, --background model: every camera's particle level is
    tied (its background region's 10-12 keV counts in the fit, as one bin) and stays off its
    limit; the CXB norm stays near the simulated sky (its prior is 20%); kT is recovered."""
    truth, paths, _, _ = cleaned
    from xmmext.steps import FitOptions, run_fit
    c = truth["cluster"]
    fit = run_fit(paths.spectra, tmp_path / "fit", FitOptions(model="tbabs*zbremss", nh=c["nH"], redshift=c["redshift"],
                                                             background="model", cameras=("mos2", "pn")))
    bm = fit["background_model"]
    for cam in ("mos2", "pn"):
        assert 0.3 < bm[f"particle_{cam}_src.level"] < 3.0, bm
    sky = bm["sky_powerlaw.norm"] / (11.6 / 1.1818e7)          # the simulated CXB
    assert 0.8 < sky < 1.25, sky
    kt = fit["parameters"]["zbremss.kT"]
    assert kt["lower"] - 0.1 < c["kT"] < kt["upper"] + 0.1, kt
    assert not any(f.startswith("at-limit") for f in fit["flags"]), fit["flags"]


def test_light_curve_title_states_what_filtering_json_states(cleaned, monkeypatch, tmp_path):
    """Issue 26: a SAS-cleaned list keeps all its good time; the plot said "kept 65% of the
    time" (its gaps over the light curve's span) while filtering.json said all of it."""
    import xmmext.events.flares as FL
    from xmmext.events.reader import read_events
    truth, paths, filt, _ = cleaned
    titles = []
    monkeypatch.setattr(FL, "save_figure", lambda dest, fig: titles.append(fig.axes[0].get_title()))
    ev = read_events(truth["files"]["pn"])
    res = FL.flare_gti(ev, FilterOptions(), True)
    rec = filt["pn"]
    FL.plot_light_curve(ev, res, tmp_path / "lc.png", (rec["exposure_before_s"], rec["exposure_after_s"]))
    assert f"kept {rec['exposure_after_s']:.0f} of {rec['exposure_before_s']:.0f} s" in titles[0]
    assert f"{100 * rec['exposure_after_s'] / rec['exposure_before_s']:.0f}%" in titles[0]


def test_images_carry_the_standard_keywords(cleaned):
    """Issue 26: ds9/fv users see what an image is (they lacked TELESCOP ... and had MJDREF 0)."""
    truth, paths, filt, _ = cleaned
    for name, instrume, exposure in (("pn_images.fits", "EPN", filt["pn"]["exposure_after_s"]),
                                     ("epic_expmaps.fits", "EMOS2+EPN", None)):
        h = fits.getheader(paths.regions / name, 1)
        assert (h["TELESCOP"], h["INSTRUME"], h["OBS_ID"]) == ("XMM", instrume, OBSID)
        assert h["DATE-OBS"].startswith(truth["date_obs"][:10]) and h["DATE-END"]
        assert h["MJDREF"] == 50814.0 and h["BUNIT"] == ("count" if "images" in name else "s")
        if exposure is not None:
            assert h["EXPOSURE"] == pytest.approx(exposure, rel=1e-6)
