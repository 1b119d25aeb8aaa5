"""Issue 23f: several exposures of one camera in an observation are used together - each
screened on its own, the cleaned lists merged with their own good time and live time."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from conftest import simulate_into
from xmmext.core.paths import ObsPaths
from xmmext.steps import FilterOptions, RegionOptions, SpectraOptions, run_filtering, run_regions, run_spectra

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`

OBSID = "0999996401"


@pytest.fixture(scope="module")
def two_exposures(tmp_path_factory):
    """One observation whose pn has two exposures (10 ks, then 6 ks four hours later: two
    simulations of one sky), MOS1 one."""
    root = tmp_path_factory.mktemp("exposures")
    first = simulate_into(root / "a", obsid=OBSID, seed=31, exposure=10000.0, cameras=["mos1", "pn"])
    simulate_into(root / "b", obsid=OBSID, seed=32, exposure=6000.0, cameras=["pn"],
                  date_obs="2019-05-01T16:00:00")
    wd = root / "w"
    (wd / "data" / OBSID).mkdir(parents=True)
    shutil.copytree(root / "a" / "data" / OBSID / "event", wd / "data" / OBSID / "event")
    shutil.copy(root / "b" / "data" / OBSID / "event" / "pn_evt.fits",
                wd / "data" / OBSID / "event" / f"P{OBSID}PNU002PIEVLI0000.FIT")
    paths = ObsPaths.of(OBSID, wd)
    filt = run_filtering(paths, FilterOptions(cameras=("mos1", "pn")))
    return first, paths, filt


def test_both_exposures_screened_and_merged(two_exposures):
    _, paths, filt = two_exposures
    pn = filt["pn"]
    assert len(pn["exposures"]) == 2 and "2 exposures merged" in pn["exposure_choice"]
    assert pn["exposure_after_s"] == pytest.approx(sum(e["exposure_after_s"] for e in pn["exposures"]))
    assert 0.6 * 16000 < pn["exposure_after_s"] < 16000
    assert pn["events_after"] == sum(e["events_after"] for e in pn["exposures"])
    with fits.open(paths.clean_events("pn")) as h:
        ev = h["EVENTS"]
        assert ev.header["LIVETIME"] == pytest.approx(pn["exposure_after_s"])
        assert len(ev.data) == pn["events_after"] and np.all(np.diff(ev.data["TIME"]) >= 0)
        gti = h["STDGTI04"].data
        assert len(gti) >= 2 and np.sum(gti["STOP"] - gti["START"]) == pytest.approx(ev.header["ONTIME04"])
    assert "exposures" not in filt["mos1"] and filt["mos1"]["exposure_choice"] == "single exposure"


def test_merged_spectrum_is_the_sum_of_the_exposures(two_exposures):
    """The spectrum of the merged list = the two exposures' own spectra in the same regions
    (counts and live time add; an independent path: each per-exposure cleaned list)."""
    _, paths, filt = two_exposures
    run_regions(paths, RegionOptions(cameras=("mos1", "pn")))
    spec = run_spectra(paths, SpectraOptions(cameras=("mos1", "pn")))["cameras"]["pn"]
    from xmmext.sky.extraction_region import read_ds9
    src = read_ds9(paths.regions / "src.reg")
    counts = 0
    for k in (1, 2):
        with fits.open(paths.events / f"pn_e{k}_clean_evt.fits") as h:
            counts += int(src.contains(h["EVENTS"].data["X"], h["EVENTS"].data["Y"]).sum())
    assert spec["counts"] == counts
    with fits.open(paths.spectra / "pn_src.pha") as h:
        assert h["SPECTRUM"].header["EXPOSURE"] == pytest.approx(filt["pn"]["exposure_after_s"])
    # the residual soft protons measured on the merged list, with both exposures' corners
    sp = json.loads((paths.events / "filtering.json").read_text())["pn"]["soft_protons"]
    assert "De Luca" in sp["method"] and 0.8 < sp["ratio"] < 1.3
