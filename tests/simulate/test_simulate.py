"""The simulated observation (issue 2): layout, contents, truth and determinism."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from conftest import DEMO_OBSID, run_cli, simulate_into
import xmmext.events.gti as G
from xmmext import instrument as ins

REQUIRED = ["TIME", "RAWX", "RAWY", "DETX", "DETY", "X", "Y", "PI", "PATTERN", "FLAG", "CCDNR"]


def _evt(wd, cam, obsid=DEMO_OBSID):
    return wd / "data" / obsid / "event" / f"{cam}_evt.fits"


def test_three_event_lists_with_enough_events(demo_obs):
    wd, truth = demo_obs
    n = {}
    for cam in ("mos1", "mos2", "pn"):
        with fits.open(_evt(wd, cam)) as h:
            n[cam] = len(h["EVENTS"].data)
    assert n["mos1"] >= 1e5 and n["mos2"] >= 1e5
    assert n["pn"] >= 2.5e5


def test_pps_layout_columns_and_keywords(demo_obs):
    wd, _ = demo_obs
    for cam, instrume in (("mos1", "EMOS1"), ("mos2", "EMOS2"), ("pn", "EPN")):
        with fits.open(_evt(wd, cam)) as h:
            ev = h["EVENTS"]
            assert [c.upper() for c in ev.columns.names] == REQUIRED
            hd = ev.header
            for key in ("TELESCOP", "INSTRUME", "OBS_ID", "DATE-OBS", "RA_PNT", "DEC_PNT", "PA_PNT",
                        "FILTER", "SUBMODE", "TSTART", "TSTOP", "EXPOSURE"):
                assert key in hd, key
            assert hd["INSTRUME"] == instrume and hd["TELESCOP"] == "XMM"
            ix = ev.columns.names.index("X") + 1
            for k in ("TLMIN", "TLMAX", "TCTYP", "TCRVL", "TCDLT", "TCRPX"):
                assert f"{k}{ix}" in hd
            gtis = [x for x in h if x.name.startswith("STDGTI")]
            ccds = sorted(int(g.header["CCDID"]) for g in gtis)
            assert ccds == sorted(set(ev.data["CCDNR"].tolist()))
            for g in gtis:   # GTIs cover TSTART..TSTOP
                assert g.data["START"][0] == pytest.approx(hd["TSTART"])
                assert g.data["STOP"][-1] == pytest.approx(hd["TSTOP"])
                assert G.total(np.column_stack([g.data["START"], g.data["STOP"]])) == \
                    pytest.approx(hd["TSTOP"] - hd["TSTART"])


def test_mos1_lost_ccds_are_absent_after_2012(demo_obs):
    wd, truth = demo_obs
    with fits.open(_evt(wd, "mos1")) as h:
        ccds = set(np.unique(h["EVENTS"].data["CCDNR"]).tolist())
    assert 3 not in ccds and 6 not in ccds and {1, 2, 4, 5, 7} <= ccds


def test_truth_counts_add_up_to_the_file(demo_obs):
    wd, truth = demo_obs
    for cam in ("mos1", "mos2", "pn"):
        with fits.open(_evt(wd, cam)) as h:
            assert len(h["EVENTS"].data) == sum(truth["counts"][cam].values())


def test_component_counts_match_independent_selections(demo_obs):
    """Flare excess and corner events, measured from the file, agree with truth."""
    wd, truth = demo_obs
    flares = np.array(truth["flares"])
    t0, t1 = truth["tstart"], truth["tstop"]
    quiet_gti = G.normalise(np.array([t0] + flares.ravel().tolist() + [t1]).reshape(-1, 2))
    for cam in ("mos1", "mos2", "pn"):
        with fits.open(_evt(wd, cam)) as h:
            d = h["EVENTS"].data
            t, flag = d["TIME"], d["FLAG"]
        in_fl = G.in_gti(t, flares)
        quiet_rate = np.sum(~in_fl) / G.total(quiet_gti)
        excess = np.sum(in_fl) - quiet_rate * G.total(flares)
        expected = truth["counts"][cam]["sp_flares"]
        err = np.sqrt(np.sum(in_fl) + (G.total(flares) / G.total(quiet_gti)) ** 2 * np.sum(~in_fl))
        assert abs(excess - expected) < 5 * err, (cam, excess, expected, err)
        # corner events are QPB and pn out-of-time events read out along their columns
        # (of photons and soft protons): the QPB ones compare with the out-of-FOV share of the CCD area
        lab = np.load(wd / "data" / DEMO_OBSID / f"truth_{cam}_components.npy")
        qpb = lab == truth["component_codes"]["qpb"]
        cam_m = ins.camera(cam)
        rng = np.random.default_rng(1)
        active = truth["active_ccds"][cam]
        chips = [c for c in cam_m.ccds if c.ccdnr in active]
        areas = np.array([c.half_w * c.half_h for c in chips])
        pick = rng.choice(len(chips), 200000, p=areas / areas.sum())
        dx = np.array([c.cx for c in chips])[pick] + rng.uniform(-1, 1, 200000) * np.array([c.half_w for c in chips])[pick]
        dy = np.array([c.cy for c in chips])[pick] + rng.uniform(-1, 1, 200000) * np.array([c.half_h for c in chips])[pick]
        frac = np.mean(~cam_m.in_fov(dx, dy))
        corner = (flag & ins.OUT_OF_FOV_FLAG) != 0
        n_corner = np.sum(corner & qpb)
        photons = np.sum(~qpb & ~corner)
        assert np.sum(corner & ~qpb) <= (ins.PN_OOT_FRACTION["PrimeFullWindow"] * photons if cam == "pn" else 0)
        exp_corner = truth["counts"][cam]["qpb"] * frac
        assert abs(n_corner - exp_corner) < 5 * np.sqrt(exp_corner) + 0.01 * exp_corner, (cam, n_corner, exp_corner)


def test_cluster_centre_through_the_files_own_wcs(demo_obs):
    """X/Y of the true centre -> RA/Dec with astropy.wcs reading the TC* keywords."""
    wd, truth = demo_obs
    with fits.open(_evt(wd, "pn")) as h:
        hdr = h["EVENTS"].header
        names = h["EVENTS"].columns.names
    ix, iy = names.index("X") + 1, names.index("Y") + 1
    w = WCS(hdr, keysel=["pixel"], colsel=[ix, iy])
    ra, dec = w.wcs_pix2world([[truth["cluster"]["x"], truth["cluster"]["y"]]], 1)[0]
    d_arcsec = np.hypot((ra - truth["cluster"]["ra"]) * np.cos(np.deg2rad(dec)),
                        dec - truth["cluster"]["dec"]) * 3600
    assert d_arcsec < 1.0
    # and the events really are concentrated there
    with fits.open(_evt(wd, "pn")) as h:
        d = h["EVENTS"].data
    near = np.hypot(d["X"] - truth["cluster"]["x"], d["Y"] - truth["cluster"]["y"]) < 600   # 30"
    ring = (np.hypot(d["X"] - truth["cluster"]["x"], d["Y"] - truth["cluster"]["y"]) > 6000) & \
           (np.hypot(d["X"] - truth["cluster"]["x"], d["Y"] - truth["cluster"]["y"]) < 6600)
    # surface brightness at the centre far above that at 5 arcmin
    assert near.sum() / (np.pi * 600 ** 2) > 10 * ring.sum() / (np.pi * (6600 ** 2 - 6000 ** 2))


def test_pn_hard_light_curve_shows_flares_corners_do_not(demo_obs):
    wd, truth = demo_obs
    with fits.open(_evt(wd, "pn")) as h:
        d = h["EVENTS"].data
    t = d["TIME"]
    fov = (d["FLAG"] & ins.OUT_OF_FOV_FLAG) == 0
    hard = (d["PI"] > 10000) & (d["PI"] < 12000) & (d["PATTERN"] == 0)
    gti = [[truth["tstart"], truth["tstop"]]]
    lc = G.light_curve(t[hard & fov], truth["tstart"], truth["tstop"], gti, 100.0)
    flares = np.array(truth["flares"])
    full_flare = np.zeros(len(lc.counts), bool)
    for a, b in flares:
        full_flare |= (lc.edges[:-1] >= a) & (lc.edges[1:] <= b)
    quiet = ~G.in_gti(lc.edges[:-1], flares) & ~G.in_gti(lc.edges[1:] - 1e-6, flares)
    q_med = np.median(lc.rate[quiet])
    assert np.median(lc.rate[full_flare]) > 3 * q_med
    corner = ~fov
    assert corner.sum() > 500
    # soft protons reach the corners only as out-of-time events read out along a column:
    # the corners' flare excess is at most the OOT share of the field's
    def excess(sel):
        n_in = G.in_gti(t[sel], flares).sum()
        return n_in - (sel.sum() - n_in) * G.total(flares) / (truth["exposure_s"] - G.total(flares))
    ex_corner, ex_fov = excess(corner), excess(fov)
    assert ex_fov > 0
    assert ex_corner < ins.PN_OOT_FRACTION["PrimeFullWindow"] * ex_fov + 4 * np.sqrt(corner.sum())


def test_same_seed_gives_identical_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for wd in (a, b):
        simulate_into(wd, obsid="0999990301", seed=11, exposure=3000.0, n_point_sources=3)
    for cam in ("mos1", "mos2", "pn"):
        assert _evt(a, cam, "0999990301").read_bytes() == _evt(b, cam, "0999990301").read_bytes()
    ta = json.loads((a / "data/0999990301/truth.json").read_text())
    tb = json.loads((b / "data/0999990301/truth.json").read_text())
    ta.pop("files"), tb.pop("files")
    assert ta == tb
    simulate_into(tmp_path / "c", obsid="0999990301", seed=12, exposure=3000.0, n_point_sources=3)
    assert _evt(a, "pn", "0999990301").read_bytes() != _evt(tmp_path / "c", "pn", "0999990301").read_bytes()


def test_truth_json_has_the_design_keys(demo_obs):
    wd, truth = demo_obs
    on_disk = json.loads((wd / "data" / DEMO_OBSID / "truth.json").read_text())
    for k in ("obsid", "seed", "exposure_s", "cluster", "flares", "point_sources", "counts"):
        assert k in on_disk
    for k in ("ra", "dec", "kT", "abund", "redshift", "nH", "model"):
        assert k in on_disk["cluster"]
    assert on_disk["point_sources"] and {"ra", "dec", "counts"} <= set(on_disk["point_sources"][0])
    assert abs(sum(b - a for a, b in on_disk["flares"]) - 0.2 * on_disk["exposure_s"]) < 1.0


@pytest.mark.parametrize("args,needle", [
    (["--obsid", "12345"], "OBSID"),
    (["--obsid", "../../etc/x"], "OBSID"),
    (["--exposure", "-5"], "exposure"),
    (["--flare-fraction", "1.5"], "flare"),
    (["--cameras", "mos3"], "camera"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    r = run_cli(["python", "-m", "xmmext.simulate.observation", "--workdir", str(tmp_path)] + args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle.lower() in lines[0].lower()
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()


def test_unwritable_workdir_exits_2(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "data").write_text("a file where a folder should be")
    r = run_cli(["python", "-m", "xmmext.simulate.observation", "--workdir", str(ro), "--exposure", "1000"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
