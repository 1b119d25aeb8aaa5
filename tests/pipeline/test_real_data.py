"""Real data is the reference: every step on the real SAS-made A907 observation.

../shared/data/xmm_a907_0201903501 holds SAS-cleaned MOS1/MOS2 event lists (their own
names, GTI000n6 flare tables, no corner events) and SAS's own images and eexpmap maps.
The event lists are linked (never copied) into a temporary workdir under their names.
The tests skip cleanly when ../shared is absent.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from conftest import ROOT, run_cli

A907 = ROOT.parent / "shared" / "data" / "xmm_a907_0201903501"
OBSID = "0201903501"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not A907.is_dir(), reason=f"real XMM data not available ({A907})")]
BANDS = {"0.5-2": "0.50-2.00", "2-10": "2.00-10.00"}


@pytest.fixture(scope="module")
def a907(tmp_path_factory):
    """Steps 1-3 on A907 (automatic region), the inputs linked under their own names."""
    wd = tmp_path_factory.mktemp("a907")
    ev = wd / "data" / OBSID / "event"
    ev.mkdir(parents=True)
    for f in sorted((A907 / "event").glob("*.fits")):
        (ev / f.name).symlink_to(f)
    before = {f.name: f.stat().st_mtime_ns for f in (A907 / "event").iterdir()}
    for cmd in (["bash", str(ROOT / "run_filtering.sh"), OBSID],
                ["bash", str(ROOT / "generate_regions.sh"), OBSID],
                ["python", str(ROOT / "spectral_analysis.py"), "--obsid", OBSID]):
        r = run_cli(cmd + ["--workdir", str(wd)])
        assert r.returncode == 0, r.stderr
    assert before == {f.name: f.stat().st_mtime_ns for f in (A907 / "event").iterdir()}   # inputs untouched
    return wd, wd / "results" / OBSID


def test_lists_recognised_by_header_and_their_gtis_honoured(a907):
    _, res = a907
    filt = json.loads((res / "events" / "filtering.json").read_text())
    for cam in ("mos1", "mos2"):
        rec = filt[cam]
        assert rec["status"] == "ok" and rec["prefiltered"] is True
        assert any("GTI00" in e for e in rec["prefilter_evidence"])
        live = fits.getheader(A907 / "event" / f"{cam}_exp1_clean_evts.fits", "EVENTS")["LIVETIME"]
        assert abs(rec["exposure_after_s"] / live - 1) < 0.03          # not the 1.6x of STDGTI alone
        assert rec["events_after"] == rec["events_before"]             # never re-screened into nothing
    assert filt["pn"]["status"] == "skipped"


def test_rescreening_a_cleaned_list_keeps_most_of_it(a907, tmp_path):
    """An explicit re-screen works on the list's own good time (flared gaps are no time)."""
    wd, res = a907
    from xmmext.steps import FilterOptions, run_filtering
    from xmmext.core.paths import ObsPaths
    paths = ObsPaths.of(OBSID, wd)
    import shutil
    shutil.copytree(wd / "data", tmp_path / "data", symlinks=True)
    out = run_filtering(ObsPaths.of(OBSID, tmp_path), FilterOptions(method="histogram", cameras=["mos1", "mos2"]))
    for cam in ("mos1", "mos2"):
        assert out[cam]["status"] == "ok"
        assert out[cam]["exposure_after_s"] > 0.7 * out[cam]["exposure_before_s"]
    assert paths.results.exists()


@pytest.mark.parametrize("cam", ["mos1", "mos2"])
@pytest.mark.parametrize("band", list(BANDS))
def test_exposure_maps_and_images_match_sas(a907, cam, band):
    """On SAS's own grid: >= 95% footprint agreement, median ratio within 5%, images equal."""
    _, res = a907
    from xmmext.events.footprint import camera_livetime, ccd_livetimes, geometry_from_events
    from xmmext.sky.images import ImageGrid, band_mask, counts_image, coverage_map, exposure_map
    clean = res / "events" / f"{cam}_clean_evt.fits"
    tag = BANDS[band]
    sas_img = fits.open(A907 / "sas_images" / f"{OBSID}_{cam}_exp1-{tag}keVimg.fits")[0]
    sas_exp = fits.getdata(A907 / "sas_images" / f"{OBSID}_{cam}_exp1-{tag}keVexpmap.fits")
    grid = ImageGrid.from_header(sas_img.header)
    h = fits.getheader(clean, "EVENTS")
    live = camera_livetime(h)
    geo = geometry_from_events(clean, cam)
    cov = coverage_map(geo, grid, {c: t / live for c, t in ccd_livetimes(h).items()})
    ours = exposure_map(geo, grid, live, band, cov)
    a, b = ours > 0, sas_exp > 0
    assert (a & b).sum() / (a | b).sum() >= 0.95
    well = (ours > 0.5 * ours.max()) & (sas_exp > 0.5 * sas_exp.max())
    assert abs(np.median(ours[well] / sas_exp[well]) - 1) < 0.05
    ev = fits.getdata(clean, "EVENTS")
    sel = band_mask(ev["PI"], band)
    assert np.array_equal(counts_image(ev["X"][sel], ev["Y"][sel], grid), sas_img.data)


def test_regions_stay_on_the_detector(a907):
    _, res = a907
    reg = json.loads((res / "regions" / "regions.json").read_text())
    fov = min(g["fov_radius_arcmin"] for g in reg["geometry"].values())
    assert 1.5 < reg["radius_arcmin"] < 9.0                             # the old profile ran to 8.3'+
    assert reg["bkg_outer_arcmin"] < fov                                # annulus where the detector is
    for cam in ("mos1", "mos2"):
        assert reg["bkg_area_arcmin2"][cam] > 0.8 * np.pi * (reg["bkg_outer_arcmin"] ** 2 - reg["bkg_inner_arcmin"] ** 2) * 0.8
        assert "10-12 keV" in reg["particle_background"][cam]["from"]


def test_spectra_exposure_is_live_time(a907):
    _, res = a907
    spec = json.loads((res / "spectra" / "spectra.json").read_text())["cameras"]
    for cam in ("mos1", "mos2"):
        live = fits.getheader(A907 / "event" / f"{cam}_exp1_clean_evts.fits", "EVENTS")["LIVETIME"]
        h = fits.getheader(res / "spectra" / f"{cam}_src.pha", "SPECTRUM")
        assert abs(h["EXPOSURE"] / live - 1) < 0.03
        assert "no corner events" in spec[cam]["particle_background"]


def test_temperature_in_a_fixed_3_arcmin_circle(a907, tmp_path):
    """tbabs*zbremss in a 3' circle: rest-frame kT 4.5-7 keV (A907: ~4 keV core, ~6 keV
    outside), MOS2/MOS1 cross-normalisation within 0.93-1.07."""
    wd, res = a907
    import shutil
    shutil.copytree(wd, tmp_path / "w", symlinks=True)
    w = tmp_path / "w"
    for cmd in (["bash", str(ROOT / "generate_regions.sh"), OBSID, "--radius", "3", "--force"],
                ["python", str(ROOT / "spectral_analysis.py"), "--obsid", OBSID, "--force"],
                ["python", str(ROOT / "xspec_analysis.py"), "--input", str(w / "results" / OBSID / "spectra"),
                 "--model", "tbabs*zbremss", "--nh", "0.054", "--redshift", "0.153"]):
        r = run_cli(cmd + ["--workdir", str(w)])
        assert r.returncode == 0, r.stderr
    fit = json.loads((w / "results" / OBSID / "fit" / "fit.json").read_text())
    kt = fit["parameters"]["zbremss.kT"]
    assert 4.5 < kt["value"] < 7.0
    assert kt["lower"] < kt["value"] < kt["upper"] and kt["upper"] - kt["lower"] < 2.5
    assert 0.93 < fit["parameters"]["cross_norm.mos2"]["value"] < 1.07
    # the same spectra with SAS rmfgen MOS RMFs (--rmf; our ARF is resampled onto their grid)
    rmfs = ROOT.parent / "shared" / "data" / "xmm_epic_ngc7793_ulx4_mos_rmf"
    if rmfs.is_dir():
        spec = w / "results" / OBSID / "spectra"
        r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--input",
                     f"{spec / 'mos1_src_grp.pha'},{spec / 'mos2_src_grp.pha'}", "--rmf", f"mos1={rmfs / 'MOS1.rmf'}",
                     "--rmf", f"mos2={rmfs / 'MOS2.rmf'}", "--model", "tbabs*zbremss", "--nh", "0.054",
                     "--redshift", "0.153", "--output", str(w / "fit_sas_rmf")])
        assert r.returncode == 0, r.stderr
        sas = json.loads((w / "fit_sas_rmf" / "fit.json").read_text())
        assert any("resampled" in n for n in sas["notes"])
        assert 4.5 < sas["parameters"]["zbremss.kT"]["value"] < 7.0


def test_simulator_footprint_follows_the_real_instrument(tmp_path):
    """The simulator at A907's pointing, roll and date gives the footprint SAS's eexpmap
    has (the engine learns it from the simulated events, as from real ones)."""
    import sys
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import simulate_into
    from xmmext.events.footprint import geometry_from_events
    from xmmext.sky.images import ImageGrid, coverage_map
    h = fits.getheader(A907 / "event" / "mos1_exp1_clean_evts.fits", "EVENTS")
    simulate_into(tmp_path, obsid="0201903599", seed=3, exposure=5000.0, ra_pnt=h["RA_PNT"],
                  dec_pnt=h["DEC_PNT"], pa_pnt=h["PA_PNT"], date_obs=h["DATE-OBS"])
    need = {"mos1": 0.95, "mos2": 0.95, "pn": 0.85}     # pn: assumed array (README)
    for cam, limit in need.items():
        grid = ImageGrid.from_header(fits.getheader(A907 / "sas_images" / f"{OBSID}_{cam}_exp1-0.50-2.00keVimg.fits"))
        geo = geometry_from_events(tmp_path / "data" / "0201903599" / "event" / f"{cam}_evt.fits", cam)
        ours = coverage_map(geo, grid) > 0
        sas = fits.getdata(A907 / "sas_images" / f"{OBSID}_{cam}_exp1-0.50-2.00keVexpmap.fits") > 0
        assert (ours & sas).sum() / (ours | sas).sum() >= limit, cam


def _xcs_red():
    """The XCS point-like (red) sources: sky X/Y of this observation, and fk5 RA/Dec (through
    the SAS image's WCS, in whose image coordinates the XCS file is written)."""
    import re
    from astropy.wcs import WCS
    from xmmext.sky.images import ImageGrid
    hdr = fits.getheader(A907 / "sas_images" / f"{OBSID}_mos1_exp1-0.50-2.00keVimg.fits")
    grid, wcs = ImageGrid.from_header(hdr), WCS(hdr)
    out = []
    for line in (A907 / "xcs_sources.reg").read_text().splitlines():
        m = re.search(r"(ellipse|circle)\(([-\d.]+),([-\d.]+)", line)
        if m and "color" not in line:
            col, row = float(m.group(2)) - 1, float(m.group(3)) - 1
            ra, dec = wcs.wcs_pix2world([[col, row]], 0)[0]
            out.append((*grid.pix_to_sky(col, row), float(ra), float(dec)))
    return out


def test_point_sources_against_the_xcs_list(a907):
    """XCS (red: point-like) is the reference for detection. With MOS only (XCS also had pn):
    21 of its 29 recovered and 5 of our 25 exclusions not in it when this test was written
    (issue 23: 19 and 6 before); none of the extra ones within 20" of the field edge, where a
    wrong exposure map made them before. The sloshing core is not cut up: no exclusion within 1.2'
    of the centre (there were 4 within 1'), at most 2 within 3' that XCS does not have, and the
    core's lumps are recorded as extended structure kept in the spectrum."""
    _, res = a907
    red = _xcs_red()
    reg = json.loads((res / "regions" / "regions.json").read_text())
    ours = [(e["x"], e["y"]) for e in reg["excluded"]]
    centre = (reg["center"]["x"], reg["center"]["y"])

    def near(p, q):
        return np.hypot(p[0] - q[0], p[1] - q[1]) * 0.05 < 10.0

    def r_arcmin(p):
        return np.hypot(p[0] - centre[0], p[1] - centre[1]) * 0.05 / 60
    recovered = sum(any(near(r, o) for o in ours) for r in red)
    extra = [o for o in ours if not any(near(o, r) for r in red)]
    assert recovered >= 0.65 * len(red), (recovered, len(red))
    assert len(extra) <= 0.25 * len(red), (len(extra), len(red))
    fovs = [(g["fov_centre"], g["fov_radius_arcmin"]) for g in reg["geometry"].values()]
    assert all(any(np.hypot(o[0] - c[0], o[1] - c[1]) * 0.05 / 60 < r - 20 / 60 for c, r in fovs) for o in extra)
    assert min(r_arcmin(o) for o in ours) > 1.2
    assert sum(r_arcmin(o) < 3.0 for o in extra) <= 2
    kept = [e for e in reg["kept_extended"] if r_arcmin((e["x"], e["y"])) < 2.0]
    assert len(kept) >= 2 and all(e["classification"].startswith("extended") for e in kept)


def test_xcs_list_given_as_the_point_sources(a907, tmp_path):
    """--ptsrc file --ptsrc-reg: the XCS list (saved in fk5) is what is excluded, at its places."""
    import shutil
    wd, _ = a907
    shutil.copytree(wd, tmp_path / "w", symlinks=True)
    w = tmp_path / "w"
    red = _xcs_red()
    lst = tmp_path / "xcs_fk5.reg"
    lst.write_text("fk5\n" + "".join(f'circle({ra:.6f},{dec:.6f},20")\n' for _, _, ra, dec in red))
    r = run_cli(["bash", str(ROOT / "generate_regions.sh"), OBSID, "--ptsrc", "file", "--ptsrc-reg", str(lst),
                 "--workdir", str(w)])
    assert r.returncode == 0, r.stderr
    reg = json.loads((w / "results" / OBSID / "regions" / "regions.json").read_text())
    # XCS lists one source twice (5" apart): one exclusion per position
    distinct = [p for i, p in enumerate(red) if all(np.hypot(p[0] - q[0], p[1] - q[1]) * 0.05 > 10 for q in red[:i])]
    assert len(reg["excluded"]) == len(distinct) == len(red) - 1 and reg["detected"] == []
    for x, y, _, _ in red:
        assert min(np.hypot(e["x"] - x, e["y"] - y) for e in reg["excluded"]) * 0.05 < 10


def test_temperature_profile_of_a907(a907, tmp_path):
    """Issue 15: A907's profile (tbabs*zbremss without AtomDB: rest frame, both MOS): >= 4
    annuli, a cool centre below the outer annuli (A907 is a cool-core cluster: ~4 keV in
    the middle, ~6 keV outside; our inner annulus is 0.5' = 80 kpc wide, blurred by the PSF)."""
    import shutil
    wd, _ = a907
    shutil.copytree(wd, tmp_path / "w", symlinks=True)
    w = tmp_path / "w"
    r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--profile", "--obsid", OBSID, "--nh", "0.054",
                 "--redshift", "0.153", "--max-annuli", "4", "--workdir", str(w)])
    assert r.returncode == 0, r.stderr
    annuli = json.loads((w / "results" / OBSID / "profile" / "profile.json").read_text())["annuli"]
    assert len(annuli) == 4 and annuli[-1]["r_out_arcmin"] < 3.0          # the inner 4 (S/N 40) of 5
    kt = [a["kT"]["value"] for a in annuli]
    assert 3.5 < kt[0] < 6.0 and kt[0] < min(kt[2:])                      # cool centre
    assert 5.5 < max(kt[2:]) < 9.0
    assert all(a["kT"]["lower"] < a["kT"]["value"] < a["kT"]["upper"] for a in annuli)


def test_readme_command_without_model_gives_a_rest_frame_temperature(a907, tmp_path):
    """Issue 23a: the README's own command, no --model, no AtomDB: exit 0 with the fallback
    tbabs*(zbremss+powerlaw) at z = 0.1527 (rest-frame kT), said on the terminal, in fit.json,
    fit.xcm and the report."""
    import shutil
    from xmmext.xspec.atomdb import find_apec_files
    if find_apec_files() is not None:
        pytest.skip("AtomDB is installed here: apec is the model")
    wd, _ = a907
    shutil.copytree(wd, tmp_path / "w", symlinks=True)
    w = tmp_path / "w"
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), OBSID, "A907", "--nh", "0.054",
                 "--redshift", "0.1527", "--workdir", str(w)])
    assert r.returncode == 0, r.stderr
    assert "zbremss" in r.stdout and "AtomDB absent" in r.stdout
    res = w / "results" / OBSID
    fit = json.loads((res / "fit" / "fit.json").read_text())
    assert fit["model_fallback"]["used"] == "tbabs*(zbremss+powerlaw)"
    assert fit["parameters"]["zbremss.Redshift"]["value"] == 0.1527
    assert 2.0 < fit["parameters"]["zbremss.kT"]["value"] < 9.0
    assert "zbremss" in next(line for line in (res / "fit" / "fit.xcm").read_text().splitlines()
                             if line.startswith("# model "))
    assert "instead of tbabs*(apec+powerlaw)" in (res / "report.html").read_text()
