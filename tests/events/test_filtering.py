"""Step 1, native backend: flare screening against truth, cleaned lists, bad input."""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from conftest import assert_one_line_error, ROOT, run_cli, simulate_into
import xmmext.events.gti as G
from xmmext.events.selection import compile_expression
from xmmext.steps import FilterOptions, run_filtering
from xmmext.core.paths import ObsPaths

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`


def _quiet_gti(truth):
    fl = np.array(truth["flares"]).reshape(-1, 2)
    edges = [truth["tstart"]] + fl.ravel().tolist() + [truth["tstop"]]
    return G.normalise(np.array(edges).reshape(-1, 2)), fl


@pytest.mark.parametrize("seed,fraction", [(42, 0.2), (5, 0.2), (17, 0.15), (23, 0.3)])
def test_histogram_rejects_flares_and_keeps_quiet_time(tmp_path, seed, fraction):
    obsid = "0999991001"
    truth = simulate_into(tmp_path, obsid=obsid, seed=seed, exposure=20000.0, flare_fraction=fraction,
                          n_point_sources=5)
    summary = run_filtering(ObsPaths.of(obsid, tmp_path), FilterOptions())
    quiet, flares = _quiet_gti(truth)
    for cam in ("mos1", "mos2", "pn"):
        good = np.array(summary[cam]["gti"]).reshape(-1, 2)
        rejected_flare = 1 - G.total(G.intersect(good, flares)) / G.total(flares)
        kept_quiet = G.total(G.intersect(good, quiet)) / G.total(quiet)
        assert rejected_flare >= 0.90, (cam, rejected_flare)
        assert kept_quiet >= 0.95, (cam, kept_quiet)


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    wd = tmp_path_factory.mktemp("filt")
    truth = simulate_into(wd, obsid="0999991101", seed=3, exposure=15000.0, n_point_sources=5)
    paths = ObsPaths.of("0999991101", wd)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths.event_dir.iterdir()}
    r = run_cli(["bash", str(ROOT / "run_filtering.sh"), "0999991101", "--backend", "native",
                 "--workdir", str(wd)])
    assert r.returncode == 0, r.stderr
    return wd, truth, paths, before


def test_outputs_exist_and_inputs_untouched(filtered):
    wd, truth, paths, before = filtered
    for cam in ("mos1", "mos2", "pn"):
        for suffix in ("_clean_evt.fits", "_gti.fits", "_lc.fits", "_lc.png"):
            assert (paths.events / f"{cam}{suffix}").stat().st_size > 0
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths.event_dir.iterdir()}
    assert after == before
    assert not list(paths.events.glob(".*.part"))
    s = json.loads((paths.events / "filtering.json").read_text())
    for cam in ("mos1", "mos2", "pn"):
        for key in ("method", "threshold", "exposure_before_s", "exposure_after_s", "events_before",
                    "events_after", "gti", "fraction_rejected"):
            assert key in s[cam]
        assert s[cam]["exposure_before_s"] == pytest.approx(15000.0)


def test_cleaned_lists_obey_gti_filter_and_exposure(filtered):
    wd, truth, paths, _ = filtered
    s = json.loads((paths.events / "filtering.json").read_text())
    for cam in ("mos1", "mos2", "pn"):
        with fits.open(paths.clean_events(cam)) as h:
            d = h["EVENTS"].data
            hdr = h["EVENTS"].header
            cols = {c: np.array(d[c]) for c in ("TIME", "PI", "PATTERN", "FLAG", "CCDNR")}
            stdgti = {int(x.header["CCDID"]): np.column_stack([x.data["START"], x.data["STOP"]])
                      for x in h if x.name.startswith("STDGTI")}
        final = np.array(s[cam]["gti"])
        assert G.in_gti(cols["TIME"], final).all()
        for ccd, g in stdgti.items():
            on = cols["CCDNR"] == ccd
            assert G.in_gti(cols["TIME"][on], g).all()
        assert compile_expression(s[cam]["expression"]).evaluate(cols).all()
        assert (cols["FLAG"] == 0).all()
        ref = 4 if cam == "pn" else 1
        assert abs(hdr["EXPOSURE"] - G.total(stdgti[ref])) < 1.0
        assert abs(hdr["EXPOSURE"] - G.total(final)) < 1.0
        with fits.open(paths.events / f"{cam}_gti.fits") as hg:
            g = np.column_stack([hg["STDGTI"].data["START"], hg["STDGTI"].data["STOP"]])
            assert hg["STDGTI"].header["HDUCLAS1"] == "GTI"
        assert np.allclose(g, final)


def test_rerun_skips_then_force_redoes(filtered):
    wd, truth, paths, _ = filtered
    clean = paths.clean_events("pn")
    mtime = clean.stat().st_mtime_ns
    r = run_cli(["bash", str(ROOT / "run_filtering.sh"), "0999991101", "--backend", "native",
                 "--workdir", str(wd)])
    assert r.returncode == 0 and "up to date" in r.stdout
    assert clean.stat().st_mtime_ns == mtime
    r = run_cli(["python", "-m", "xmmext.steps", "filtering", "0999991101", "--backend", "native",
                 "--workdir", str(wd), "--force", "--cameras", "pn"])
    assert r.returncode == 0, r.stderr
    assert clean.stat().st_mtime_ns != mtime


def test_fixed_method_keeps_exactly_the_bins_under_threshold(short_obs, tmp_path):
    wd, truth = short_obs
    shutil.copytree(wd / "data", tmp_path / "data")
    paths = ObsPaths.of("0999990201", tmp_path)
    summary = run_filtering(paths, FilterOptions(method="fixed", threshold_mos=0.2, threshold_pn=0.3,
                                                 min_gti=0.0))
    for cam, thr in (("mos1", 0.2), ("mos2", 0.2), ("pn", 0.3)):
        with fits.open(paths.events / f"{cam}_lc.fits") as h:
            lc = h["RATE"].data
            half = h["RATE"].header["TIMEDEL"] / 2
        good_bins = G.normalise(np.column_stack([lc["TIME"] - half, lc["TIME"] + half])[lc["RATE"] <= thr])
        assert np.allclose(np.array(summary[cam]["gti"]), good_bins)
        assert summary[cam]["threshold"] == thr


def test_ratio_method(short_obs, tmp_path):
    wd, truth = short_obs
    shutil.copytree(wd / "data", tmp_path / "data")
    method = "ratio"
    summary = run_filtering(ObsPaths.of("0999990201", tmp_path), FilterOptions(method=method))
    quiet, flares = _quiet_gti(truth)
    for cam in ("mos1", "mos2", "pn"):
        good = np.array(summary[cam]["gti"]).reshape(-1, 2)
        assert summary[cam]["method"] == method
        assert G.total(G.intersect(good, flares)) / G.total(flares) < 0.3
        assert G.total(G.intersect(good, quiet)) / G.total(quiet) > 0.8


def test_pps_named_gzip_goes_through_unchanged(short_obs, tmp_path):
    wd, truth = short_obs
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "data/0999990201/event").mkdir(parents=True)
    src = wd / "data/0999990201/event/mos2_evt.fits"
    shutil.copy(src, a / "data/0999990201/event/mos2_evt.fits")
    with open(src, "rb") as fi, gzip.open(b / "data/0999990201/event/P0999990201M2S002MIEVLI0000.FIT.gz", "wb") as fo:
        shutil.copyfileobj(fi, fo)
    sa = run_filtering(ObsPaths.of("0999990201", a), FilterOptions(cameras=["mos2"]))
    sb = run_filtering(ObsPaths.of("0999990201", b), FilterOptions(cameras=["mos2"]))
    assert sa["mos2"]["gti"] == sb["mos2"]["gti"]
    assert sa["mos2"]["events_after"] == sb["mos2"]["events_after"]
    with fits.open(a / "results/0999990201/events/mos2_clean_evt.fits") as ha, \
            fits.open(b / "results/0999990201/events/mos2_clean_evt.fits") as hb:
        assert np.array_equal(ha["EVENTS"].data["TIME"], hb["EVENTS"].data["TIME"])


def test_missing_camera_is_skipped_and_recorded(short_obs, tmp_path):
    wd, _ = short_obs
    (tmp_path / "data/0999990201/event").mkdir(parents=True)
    shutil.copy(wd / "data/0999990201/event/pn_evt.fits", tmp_path / "data/0999990201/event/")
    s = run_filtering(ObsPaths.of("0999990201", tmp_path), FilterOptions())
    assert s["pn"]["status"] == "ok"
    assert s["mos1"]["status"] == "skipped" and "no event list" in s["mos1"]["reason"]


def _cli(wd, *args):
    return run_cli(["bash", str(ROOT / "run_filtering.sh"), *args, "--workdir", str(wd), "--backend", "native"])




def test_missing_event_folder(tmp_path):
    assert_one_line_error(_cli(tmp_path, "0999990999"), 2, "no event folder")


def test_corrupt_fits(tmp_path):
    d = tmp_path / "data/0999990999/event"
    d.mkdir(parents=True)
    (d / "pn_evt.fits").write_bytes(b"\x00garbage" * 1000)
    assert_one_line_error(_cli(tmp_path, "0999990999", "--cameras", "pn"), 2, "not a readable FITS")


def test_no_pi_column(short_obs, tmp_path):
    wd, _ = short_obs
    d = tmp_path / "data/0999990999/event"
    d.mkdir(parents=True)
    with fits.open(wd / "data/0999990201/event/mos1_evt.fits") as h:
        ev = h["EVENTS"]
        hdu = fits.BinTableHDU.from_columns([c for c in ev.columns if c.name != "PI"], header=ev.header, name="EVENTS")
        hdu.header["OBS_ID"] = "0999990999"        # the folder's observation (another one's list is refused)
        fits.HDUList([h[0].copy(), hdu]).writeto(d / "mos1_evt.fits")
    assert_one_line_error(_cli(tmp_path, "0999990999", "--cameras", "mos1"), 2, "no PI column")


def test_unknown_method_and_bad_obsid(tmp_path):
    assert_one_line_error(_cli(tmp_path, "0999990999", "--method", "magic"), 2, "invalid choice: 'magic'")
    assert_one_line_error(_cli(tmp_path, "099999099"), 2, "OBSID")
    assert_one_line_error(_cli(tmp_path, "0999990999;ls"), 2, "OBSID")


def test_fully_flared_observation_exits_4_without_half_files(tmp_path):
    simulate_into(tmp_path, obsid="0999990401", seed=9, exposure=8000.0, flare_fraction=1.0, n_flares=1,
                  flare_scale=6.0, n_point_sources=2)
    r = _cli(tmp_path, "0999990401")
    assert_one_line_error(r, 4, "100% flared")
    ev = tmp_path / "results/0999990401/events"
    assert not list(ev.glob("*_clean_evt.fits")) and not list(ev.glob(".*.part"))
    s = json.loads((ev / "filtering.json").read_text())
    assert all(v["status"] == "failed" for v in s.values())


def test_sas_backend_without_sas_exits_3(short_obs):
    wd, _ = short_obs
    r = run_cli(["bash", str(ROOT / "run_filtering.sh"), "0999990201", "--backend", "sas", "--workdir", str(wd)],
                env_extra={"SAS_DIR": ""})
    assert_one_line_error(r, 3, "SAS is not usable")
