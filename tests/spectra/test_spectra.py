"""Step 3: spectra, responses, BACKSCAL, grouping (native), checked against truth."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.io import fits

from conftest import assert_one_line_error, ROOT, SHARED_DATA, needs_shared, run_cli
from xmmext import instrument as ins
import xmmext.xspec.library as xm
from xmmext.spectra.ogip import read_pha
from xmmext.sky.extraction_region import read_ds9
from xmmext.simulate.truth import cluster_flux_fraction, cluster_spectrum, step1_selected
from xmmext.spectra.grouping import DEFAULT_GROUP, group_min_counts, group_min_sn, group_optimal, min_width_channels, parse_group
from xmmext.core.errors import UsageError
from xmmext.spectra.responses import extended_arf
from xmmext.spectra.local_background import background_scaling, constant_within_groups

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`

OBS = "0999994001"


@pytest.fixture(scope="module")
def extracted(processed_obs):
    return processed_obs


def _truth_in_regions(paths, truth, cam, emin=None, emax=None):
    """Cluster events (truth labels) in the source and background regions after step-1 selection."""
    ev, m = step1_selected(paths, cam)
    _, cl = step1_selected(paths, cam, ("cluster",))
    if emin is not None:
        m &= (ev.columns["PI"] >= emin * 1000) & (ev.columns["PI"] < emax * 1000)
    src, bkg = read_ds9(paths.regions / "src.reg"), read_ds9(paths.regions / "bkg.reg")
    x, y = ev.columns["X"], ev.columns["Y"]
    return ev, m & src.contains(x, y), m & bkg.contains(x, y), cl


def test_truth_labels_follow_step1_selection(extracted):
    """sim_truth.step1_selected (the truth helpers' view of step 1) keeps exactly the rows
    of the cleaned event list, and the cluster's photons are a part of them."""
    wd, truth, paths, summary = extracted
    for cam in ("mos1", "pn"):
        ev, kept = step1_selected(paths, cam)
        clean = fits.getdata(paths.clean_events(cam), "EVENTS")
        assert kept.sum() == len(clean)
        assert np.array_equal(np.sort(ev.columns["TIME"][kept]), np.sort(clean["TIME"]))
        _, cluster = step1_selected(paths, cam, ("cluster",))
        assert 0 < cluster.sum() < kept.sum() and not np.any(cluster & ~kept)


def test_sherpa_finds_everything_from_the_header(extracted):
    from sherpa.astro import ui
    wd, truth, paths, summary = extracted
    for cam in ("mos1", "mos2", "pn"):
        ui.clean()
        ui.load_pha(str(paths.spectra / f"{cam}_src_grp.pha"))
        d = ui.get_data()
        assert ui.get_bkg() is not None and ui.get_rmf() is not None and ui.get_arf() is not None
        with fits.open(paths.clean_events(cam)) as h:
            x, y = h["EVENTS"].data["X"], h["EVENTS"].data["Y"]
        n_events = int(read_ds9(paths.regions / "src.reg").contains(x, y).sum())
        assert d.counts.sum() == n_events == summary["cameras"][cam]["counts"]
        assert np.ndim(ui.get_bkg().backscal) == 1            # per-channel BACKSCAL read by sherpa
        assert d.grouped
    ui.clean()


def test_backscal_ratio_against_monte_carlo(extracted):
    wd, truth, paths, summary = extracted
    rng = np.random.default_rng(5)
    src, bkg = read_ds9(paths.regions / "src.reg"), read_ds9(paths.regions / "bkg.reg")
    for cam in ("mos1", "mos2", "pn"):
        from xmmext.events.footprint import geometry_from_events
        geo = geometry_from_events(paths.clean_events(cam), cam)
        areas = []
        for reg in (src, bkg):
            n = 400000
            xs = reg.x + rng.uniform(-reg.r_out, reg.r_out, n)
            ys = reg.y + rng.uniform(-reg.r_out, reg.r_out, n)
            ok = reg.contains(xs, ys) & geo.exposed(xs, ys)
            areas.append(ok.mean() * (2 * reg.r_out) ** 2)
        s = summary["cameras"][cam]
        assert s["backscal_src"] / s["backscal_bkg"] == pytest.approx(areas[0] / areas[1], rel=0.02)
        with fits.open(paths.spectra / f"{cam}_src.pha") as h:
            assert h["SPECTRUM"].header["BACKSCAL"] == s["backscal_src"]


def test_net_counts_match_truth(extracted):
    """0.5-7 keV background-subtracted counts = the cluster's counts in the source region
    within 3 sigma: its own emission in the background annulus (predicted from step 2's
    beta model) is not subtracted, pn out-of-time events are, and the prediction of the
    cluster in the annulus matches the simulated cluster events there."""
    wd, truth, paths, summary = extracted
    for cam in ("mos1", "mos2", "pn"):
        ev, in_src, in_bkg, cl = _truth_in_regions(paths, truth, cam, 0.5, 7.0)
        src_pha, bkg_pha = read_pha(paths.spectra / f"{cam}_src.pha"), read_pha(paths.spectra / f"{cam}_bkg.pha")
        eff = src_pha.backscal / bkg_pha.backscal
        sl = slice(100, 1400)
        net = src_pha.counts[sl].sum() - np.sum(eff[sl] * bkg_pha.counts[sl])
        err = math.sqrt(src_pha.counts[sl].sum() + np.sum(eff[sl] ** 2 * bkg_pha.counts[sl]))
        expected = (in_src & cl).sum()
        assert abs(net - expected) < 3 * err, (cam, net, expected, err)
        oot = np.load(paths.data / f"truth_{cam}_components.npy") == truth["component_codes"]["out_of_time"]
        ev_all, in_src_all, in_bkg_all, cl_all = _truth_in_regions(paths, truth, cam)
        subtracted_oot = summary["cameras"][cam]["out_of_time_subtracted"]
        if cam == "pn":     # the simulated OOT events + the particles' twins (see out_of_time_spectra)
            f = ins.PN_OOT_FRACTION["PrimeFullWindow"]
            qpb = np.load(paths.data / f"truth_{cam}_components.npy") == truth["component_codes"]["qpb"]
            expected_oot = (in_src_all & oot).sum() + f / (1 + f) * (in_src_all & qpb).sum()
            assert abs(subtracted_oot / expected_oot - 1) < 0.05, (subtracted_oot, expected_oot)
        else:
            assert subtracted_oot == 0
        # whole band; the prediction's error: step 2's beta model (rc, beta covariance)
        own = summary["cameras"][cam]["source_counts_bkg_region"]
        own_err = summary["cameras"][cam]["source_counts_bkg_region_error"]
        true_own = (in_bkg_all & cl_all).sum()
        assert 0 < own_err < 0.3 * own
        assert abs(own - true_own) < 3 * math.sqrt(own_err ** 2 + true_own), (cam, own, own_err, true_own)


def test_background_annulus_keeps_the_plain_annulus_subtraction(extracted, tmp_path):
    """``--background annulus``: the cluster's emission in the annulus is scaled and
    subtracted with the background again (net counts lower by about that emission x the
    vignetted area ratio), and spectra.json says so."""
    import shutil
    wd, truth, paths, summary = extracted
    copy = tmp_path / "w"
    shutil.copytree(wd, copy, symlinks=True)
    r = _cli(copy, "--background", "annulus", "--cameras", "mos1,pn")
    assert r.returncode == 0, r.stderr
    plain = json.loads((copy / "results" / OBS / "spectra" / "spectra.json").read_text())["cameras"]
    for cam in ("mos1", "pn"):
        own = summary["cameras"][cam]["source_counts_bkg_region"]
        assert plain[cam]["source_counts_bkg_region"] == 0 and "subtract" in plain[cam]["source_in_background"]
        lost = summary["cameras"][cam]["net_counts"] - plain[cam]["net_counts"]
        assert 0.5 * own < lost < 2.0 * own, (cam, lost, own)


def test_on_axis_point_source_arf_is_the_on_axis_area():
    from xmmext.sky.images import ImageGrid
    from xmmext.sky.extraction_region import ExtractionRegion
    from xmmext.events.footprint import Geometry, optical_axis
    cam = ins.camera("pn")
    grid = ImageGrid.around_pointing()
    ax, ay = optical_axis("pn", 30.0)
    geo = Geometry("pn", {}, (ax, ay), 18000.0, (ax, ay), 30.0)
    reg = ExtractionRegion(ax, ay, 0.0, 400.0)      # 20" at the optical axis
    bright = np.zeros((grid.n, grid.n))
    c, r = grid.sky_to_pix(ax, ay)
    bright[int(round(float(r))), int(round(float(c)))] = 1.0
    arf, frac = extended_arf(cam, reg, grid, bright, np.ones((grid.n, grid.n)), geo)
    emid = 0.5 * (ins.RESP_ELO + ins.RESP_EHI)
    assert frac == pytest.approx(1.0)
    theta = geo.off_axis_arcmin(*grid.pix_to_sky(int(round(float(c))), int(round(float(r)))))
    assert np.allclose(arf, cam.on_axis_area(emid) * ins.vignetting("pn", theta, emid))
    assert np.allclose(arf, cam.on_axis_area(emid), rtol=0.005)


def test_folded_model_rate_matches_extracted_rate(extracted):
    from xmmext.spectra.ogip import read_arf, read_rmf
    wd, truth, paths, summary = extracted
    c = truth["cluster"]
    src = read_ds9(paths.regions / "src.reg")
    frac = cluster_flux_fraction(truth, src)
    xm.set_abundances(c["abund_table"])
    results = {}
    for cam in ("mos1", "mos2", "pn"):
        rmf = read_rmf(paths.spectra / f"{cam}.rmf")
        lo, hi, specresp = read_arf(paths.spectra / f"{cam}.arf")
        e = np.append(lo, hi[-1])
        flux = c["norm"] * frac * cluster_spectrum(c, e)
        model = (flux * specresp) @ rmf.matrix
        sl = slice(100, 1400)
        s_pha, b_pha = read_pha(paths.spectra / f"{cam}_src.pha"), read_pha(paths.spectra / f"{cam}_bkg.pha")
        eff = s_pha.backscal / b_pha.backscal
        net_rate = (s_pha.counts[sl].sum() - np.sum(eff[sl] * b_pha.counts[sl])) / s_pha.exposure
        results[cam] = (model[sl].sum(), net_rate)
    print(results)
    for cam, (m, n) in results.items():
        assert m == pytest.approx(n, rel=0.10), cam


@needs_shared()
@pytest.mark.parametrize("cam,name", [("PN", "PN_spectrum_grp20.fits"), ("MOS1", "MOS1_spectrum_grp.fits"),
                                      ("PN", "PNbackground_spectrum.fits")])
def test_own_reader_on_real_sas_spectra(cam, name):
    path = SHARED_DATA / cam / name
    s = read_pha(path)
    with fits.open(path) as h:
        d, hd = h["SPECTRUM"].data, h["SPECTRUM"].header
        assert s.counts.sum() == d["COUNTS"].sum()
        assert s.exposure == hd["EXPOSURE"] and s.backscal == hd["BACKSCAL"]
    if "grp" in name:
        assert s.files["RESPFILE"].name == hd["RESPFILE"] and s.files["BACKFILE"].exists()
        assert s.grouping is not None


def test_grouping_rules():
    rng = np.random.default_rng(1)
    counts = rng.poisson(3.0, 2400)
    g, q = group_min_counts(counts, 25, first=60, last=1999)
    starts = np.flatnonzero(g[60:2000] == 1) + 60
    sums = np.add.reduceat(counts[60:2000], starts - 60)
    assert (sums >= 25).all() and q[:60].all() and q[2000:].all() and not q[60:2000].any()
    g2, _ = group_min_sn(counts, 5.0, np.zeros_like(counts), 0.0, 60, 1999)
    sums2 = np.add.reduceat(counts[60:2000], np.flatnonzero(g2[60:2000] == 1))
    assert (sums2 / np.sqrt(sums2) >= 5).all()
    g3, _ = group_optimal(counts * 50, ins.camera("mos1"), 60, 1999)
    widths = np.diff(np.append(np.flatnonzero(g3[60:2000] == 1), 1940))
    assert widths.min() >= 1 and 1940 / len(widths) > 3        # wider than a channel...
    fwhm = ins.camera("mos1").fwhm_kev(1.0) * 1000 / 5
    assert widths[:20].max() <= fwhm                           # ...never wider than the resolution


def test_grouping_oversample_like_specgroup():
    """The default grouping is specgroup's mincounts=25 oversample=3: on a bright spectrum
    (every channel above 25 counts) groups are still at least FWHM/3 wide."""
    spec = parse_group(DEFAULT_GROUP)
    assert spec == ("mincounts", 25.0, 3.0)
    cam = ins.camera("pn")
    counts = np.full(cam.n_channels, 400)
    width = min_width_channels(cam, spec.oversample, cam.n_channels)
    g, q = group_min_counts(counts, spec.value, 60, 1999, width)
    starts = np.flatnonzero(g[60:2000] == 1) + 60
    widths = np.diff(np.append(starts, 2000))
    assert (widths[:-1] >= width[starts[:-1]]).all() and widths.min() > 1
    # the group width follows the resolution: wider groups at 6 keV than at 1 keV
    assert widths[np.searchsorted(starts, 1200) - 1] > widths[np.searchsorted(starts, 200) - 1]
    assert group_min_counts(counts, 25, 60, 1999)[0][60:2000].all()        # without: single channels
    assert parse_group("minsn=5 oversample=2") == ("minsn", 5.0, 2.0)
    for bad in ("oversample=3", "mincounts=25,minsn=3", "mincounts=25,oversample=0", "mincounts=25,foo=2"):
        with pytest.raises(UsageError):
            parse_group(bad)


def test_grouping_options_merge_with_the_defaults():
    """Issue 26: --group mincounts=20 keeps specgroup's oversample 3 (it used to drop it);
    oversample=none lifts the width limit; the text says every part."""
    assert parse_group("mincounts=20") == ("mincounts", 20.0, 3.0)
    assert parse_group("minsn=4") == ("minsn", 4.0, 3.0)
    assert parse_group("mincounts=20,oversample=none") == ("mincounts", 20.0, None)
    assert parse_group("mincounts=20").text() == "mincounts=20,oversample=3"
    assert parse_group("mincounts=20,oversample=none").text() == "mincounts=20,oversample=none"
    assert parse_group("optimal").text() == "optimal"


def test_grouping_recorded_in_the_spectrum(extracted):
    """The grouped spectrum says how it was grouped (and spectra.json in the full form)."""
    from astropy.io import fits
    wd, truth, paths, spec = extracted
    assert spec["grouping"] == "mincounts=25,oversample=3"
    with fits.open(paths.spectra / "pn_src_grp.pha") as h:
        hdr = h["SPECTRUM"].header
        assert (hdr["GRPMETH"], hdr["GRPVALUE"], hdr["GRPOVRSM"]) == ("mincounts", 25.0, 3.0)
        assert "grouped by xmmext: mincounts=25,oversample=3" in str(hdr["HISTORY"])


def _cli(wd, *args):
    return run_cli(["python", str(ROOT / "spectral_analysis.py"), "--obsid", OBS, "--workdir", str(wd), *args])




def test_bad_inputs(extracted, tmp_path):
    import shutil
    from xmmext.core.paths import ObsPaths
    shared, truth, _, _ = extracted
    wd = tmp_path / "w"                      # a copy: a failed run rewrites spectra.json, and the
    shutil.copytree(shared, wd)              # shared observation's later fits must not see it
    paths = ObsPaths.of(OBS, wd)
    bad = tmp_path / "bad.reg"
    bad.write_text("# Region file format: DS9 version 4.1\nphysical\npolygon(1,2,3\n")
    assert_one_line_error(_cli(wd, "--src-reg", str(bad)), 2, "region")
    src = read_ds9(paths.regions / "src.reg")
    overl = tmp_path / "overlap.reg"
    overl.write_text(f"# Region file format: DS9 version 4.1\nphysical\ncircle({src.x + 100},{src.y},{src.r_out / 2})\n")
    assert_one_line_error(_cli(wd, "--bkg-reg", str(overl)), 2, "overlaps the source")
    far = tmp_path / "far.reg"        # a region off every CCD: every camera skipped -> exit 4
    far.write_text("# Region file format: DS9 version 4.1\nphysical\ncircle(2000,2000,100)\n")
    assert_one_line_error(_cli(wd, "--src-reg", str(far), "--force"), 4, "no camera gives a spectrum")
    assert_one_line_error(_cli(wd, "--group", "mincounts=-3"), 2, "--group")
    empty = tmp_path / "empty"
    assert_one_line_error(run_cli(["python", str(ROOT / "spectral_analysis.py"), "--obsid", OBS, "--workdir", str(empty)]),
              2, "run step 1")


def test_background_scaling_is_constant_within_groups():
    """Per-group background-count-weighted mean: each group's subtracted counts unchanged."""
    eff = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    c_bkg = np.array([1, 3, 0, 0, 2, 2])
    grouping = np.array([1, -1, 1, -1, 1, -1])
    out = constant_within_groups(eff, c_bkg, grouping)
    assert out.tolist() == [1.75, 1.75, 3.5, 3.5, 5.5, 5.5]      # empty group: plain mean
    for g in (slice(0, 2), slice(4, 6)):
        assert np.sum(out[g] * c_bkg[g]) == np.sum(eff[g] * c_bkg[g])


def test_background_scaling_leaves_the_source_in_the_annulus_unsubtracted():
    """Expected (noise-free) spectra built from known parts: particles scale with area
    (a), the sky with the vignetted area (v, energy dependent), and the source's own
    counts in the annulus are k x its counts in the source region. The scaling subtracts
    exactly the particles and sky of the source region and returns the source's part;
    without ``source_per_net`` the source's part is subtracted like sky (self-subtraction)."""
    n = 4000                                   # 2.4 eV channels: the 20-channel smoothing is negligible
    e = np.linspace(0.3, 10.0, n)
    a = 0.4
    v = 0.8 - 0.02 * e                         # vignetting flattens the ratio less at high E
    k = 0.05 + 0.004 * e                       # harder source share outside (a hotter rim)
    particles_bkg = 30.0 + 2.0 * e
    sky_bkg = 200.0 * np.exp(-e / 1.5)
    source_src = 1500.0 * np.exp(-e / 4.0)
    c_src = source_src + a * particles_bkg + v * sky_bkg
    c_bkg = k * source_src + particles_bkg + sky_bkg
    core = slice(400, 3600)                    # away from the smoothing's edges
    eff, own = background_scaling(c_bkg, particles_bkg, a, 1.0, v, c_src=c_src, source_per_net=k)
    assert np.allclose((eff * c_bkg)[core], (a * particles_bkg + v * sky_bkg)[core], rtol=2e-3)
    assert np.allclose(own[core], (k * source_src)[core], rtol=2e-3)
    eff, own = background_scaling(c_bkg, particles_bkg, a, 1.0, v)
    assert np.allclose((eff * c_bkg)[core], (a * particles_bkg + v * (sky_bkg + k * source_src))[core], rtol=2e-3)
    assert not own.any()
    # pn out-of-time events: the source region's own are subtracted, the annulus's are not sky
    oot_src, oot_bkg = 80.0 * np.exp(-e / 3.0), 40.0 * np.exp(-e / 3.0)
    eff, own = background_scaling(c_bkg + oot_bkg, particles_bkg, a, 1.0, v, c_src=c_src + oot_src,
                                  source_per_net=k, out_of_time=(oot_src, oot_bkg))
    assert np.allclose((eff * (c_bkg + oot_bkg))[core], (a * particles_bkg + v * sky_bkg + oot_src)[core], rtol=2e-3)
    assert np.allclose(own[core], (k * source_src)[core], rtol=2e-3)
