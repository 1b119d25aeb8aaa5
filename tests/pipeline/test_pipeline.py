"""All steps together: demo pieces, --list with workers, failures, report, input security."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from conftest import ROOT, run_cli, simulate_into
from xmmext.core.errors import UsageError
from xmmext.fitting.combined import weighted_mean
from xmmext.pipeline.many import read_obs_list

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`


def test_obs_list_parsing(tmp_path):
    f = tmp_path / "obs.txt"
    f.write_text("# my clusters\n0999990101\n\n  0999990201   # second\n")
    assert read_obs_list(f) == ["0999990101", "0999990201"]
    f.write_text("0999990101\n12345\n0999990201\n../etc\n")
    with pytest.raises(UsageError) as exc:
        read_obs_list(f)
    assert "line 2" in exc.value.message and "line 4" in exc.value.message
    f.write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="no OBSID"):
        read_obs_list(f)


def test_weighted_mean_and_consistency():
    r = weighted_mean([5.0, 5.2, 4.9], [4.8, 5.0, 4.7], [5.2, 5.4, 5.1])
    assert r["mean"] == pytest.approx(np.mean([5.0, 5.2, 4.9]))
    assert r["error"] == pytest.approx(0.2 / np.sqrt(3))
    assert r["dof"] == 2 and 0.3 < r["p_value"] < 1
    bad = weighted_mean([1.0, 5.0], [0.9, 4.9], [1.1, 5.1])
    assert bad["p_value"] < 1e-6


@pytest.mark.parametrize("args", [["../0999990101", "x"], ["0999990101;ls", "x"], ["0999990101", "a b"],
                                  ["0999990101", "'q'"], ["0999990101", "../up"], ["099999010", "x"]])
def test_obsid_and_name_are_validated_before_use(tmp_path, args):
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), *args, "--workdir", str(tmp_path)])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    assert not (tmp_path / "results").exists()


# four pointings of the same cluster and sky (its point sources fixed on the sky): different
# seeds, flare fractions, exposures and pointings (offsets in arcmin east, north of the cluster)
LIST_OBS = (("0999995001", 11, 0.10, 6000.0, (0.3, 0.4)), ("0999995002", 12, 0.25, 5000.0, (-2.5, 1.0)),
            ("0999995003", 13, 0.05, 5000.0, (1.5, -2.5)), ("0999995004", 14, 0.30, 6000.0, (0.0, 3.0)))
CLUSTER = (150.5, 2.2)
LIST_ARGS = ["--model", "tbabs*zbremss", "--nh", "0.03", "--redshift", "0.05", "--workers", "2"]


@pytest.fixture(scope="module")
def list_run(tmp_path_factory):
    """The four observations through --list with 2 workers (process pool)."""
    wd = tmp_path_factory.mktemp("many")
    truths = {}
    for obsid, seed, frac, expo, (east, north) in LIST_OBS:
        truths[obsid] = simulate_into(wd, obsid=obsid, seed=seed, exposure=expo, flare_fraction=frac,
                                      n_point_sources=6, sky_seed=7, cluster_ra=CLUSTER[0], cluster_dec=CLUSTER[1],
                                      ra_pnt=CLUSTER[0] + east / 60 / np.cos(np.radians(CLUSTER[1])),
                                      dec_pnt=CLUSTER[1] + north / 60)
    lst = wd / "obs_list.txt"
    lst.write_text("# four simulated pointings\n" + "\n".join(o for o, *_ in LIST_OBS) + "\n")
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), "--list", str(lst), "four", *LIST_ARGS,
                 "--workdir", str(wd)], timeout=900)
    return wd, truths, r


def test_list_of_four_all_succeed_and_combine(list_run):
    wd, truths, r = list_run
    assert r.returncode == 0, r.stderr
    failed = wd / "results" / "failed.txt"
    assert not failed.exists() or failed.read_text().strip() == ""
    for obsid, *_ in LIST_OBS:
        assert re.search(obsid + r"\s+done\s+done\s+done\s+done\s+done\s+ok", r.stdout), r.stdout
    table = (wd / "results" / "multi" / "four" / "table.csv").read_text().splitlines()
    assert len(table) == 1 + 4
    summary = json.loads((wd / "results" / "multi" / "four" / "summary.json").read_text())
    m = summary["weighted_means_1sigma"]["zbremss.kT"]
    true_kt = truths[LIST_OBS[0][0]]["cluster"]["kT"]
    assert abs(m["mean"] - true_kt) < 2.6 * m["error"], m           # 99% two-sided
    assert m["dof"] == 3 and m["p_value"] > 0.001                   # the four agree with each other
    assert (wd / "results" / "multi" / "four" / "parameters.png").stat().st_size > 0
    ecsv = (wd / "results" / "multi" / "four" / "table.ecsv").read_text()
    assert "unit: keV" in ecsv
    assert table[0].split(",")[-2:] == ["n_flags", "flags"]                  # issue 23c: flags in the table


def test_dask_scheduler_gives_identical_results(list_run, tmp_path):
    """One of the list's observations through a local dask cluster reproduces the
    process-pool fit exactly, and its row of the combined table."""
    import shutil
    wd, truths, _ = list_run
    two = [LIST_OBS[1][0]]
    for obsid in two:
        shutil.copytree(wd / "data" / obsid, tmp_path / "data" / obsid)
    lst = tmp_path / "two.txt"
    lst.write_text("\n".join(two) + "\n")
    # the point sources of the four's union (with one observation alone, its list would be its own)
    union = wd / "results" / "multi" / "four" / "ptsrc_union.reg"
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), "--list", str(lst), "two",
                 *LIST_ARGS[:-2], "--workers", "1", "--scheduler", "local", "--ptsrc-reg", str(union),
                 "--workdir", str(tmp_path)], timeout=900)
    assert r.returncode == 0, r.stderr
    for obsid in two:
        a = json.loads((wd / "results" / obsid / "fit" / "fit.json").read_text())
        b = json.loads((tmp_path / "results" / obsid / "fit" / "fit.json").read_text())
        assert a["parameters"] == b["parameters"] and a["statistic"] == b["statistic"], obsid
    rows_a = (wd / "results" / "multi" / "four" / "table.csv").read_text().splitlines()
    rows_b = (tmp_path / "results" / "multi" / "two" / "table.csv").read_text().splitlines()
    assert rows_b == [rows_a[0]] + [row for row in rows_a[1:] if row.split(",")[0] in two]


def test_corrupt_observation_fails_alone(list_run, tmp_path):
    """A corrupt observation in a list fails with its reason in failed.txt; the good one
    still completes; exit 4. Run again, the good one's steps are all up to date (the
    shared point-source list of this pair is found again)."""
    import shutil
    wd, truths, _ = list_run
    good = LIST_OBS[0][0]
    for sub in ("data", "results"):
        shutil.copytree(wd / sub / good, tmp_path / sub / good)       # copy2 keeps mtimes: up to date
    bad = tmp_path / "data" / "0999995009" / "event"
    bad.mkdir(parents=True)
    (bad / "pn_evt.fits").write_bytes(b"corrupt" * 100)
    lst = tmp_path / "obs_list.txt"
    lst.write_text(f"# one good, one corrupt\n{good}\n0999995009\n")
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), "--list", str(lst), "pair", *LIST_ARGS,
                 "--workdir", str(tmp_path)])
    assert r.returncode == 4, r.stderr
    failed = (tmp_path / "results" / "failed.txt").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith("0999995009") and "FITS" in failed[0]
    assert re.search(good + r"\s+skipped\s+\w+\s+\w+\s+\w+\s+\w+\s+ok", r.stdout), r.stdout
    assert len((tmp_path / "results" / "multi" / "pair" / "table.csv").read_text().splitlines()) == 2
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), "--list", str(lst), "pair", *LIST_ARGS,
                 "--workdir", str(tmp_path)])
    assert r.returncode == 4, r.stderr
    assert re.search(good + r"\s+skipped\s+skipped\s+skipped\s+skipped\s+\w+\s+ok", r.stdout), r.stdout


def test_pointings_of_one_cluster_exclude_one_source_list(list_run):
    """Issue 23b: the four pointings' detections merged by sky position into one list
    (results/multi/four/ptsrc_union.reg), excluded in every observation wherever it is
    exposed: the same sources at the same places, whichever pointing found them."""
    from xmmext.sky.source_lists import read_source_list
    wd, truths, r = list_run
    assert r.returncode == 0, r.stderr
    union = read_source_list(wd / "results" / "multi" / "four" / "ptsrc_union.reg", *CLUSTER)
    assert len(union) >= 4
    own = []
    for obsid, *_ in LIST_OBS:
        reg = json.loads((wd / "results" / obsid / "regions" / "regions.json").read_text())
        own.append(len(reg["detected"]))
        excluded = {(round(e["ra"], 5), round(e["dec"], 5), e["radius_arcsec"]) for e in reg["excluded"]}
        # every union member is excluded at the union's place and size (BACKSCAL counts only
        # what lies on the detector), and nothing else is
        assert excluded == {(round(s.ra, 5), round(s.dec, 5), s.radius_arcsec) for s in union}, obsid
    # the union holds what every pointing found, more than any one of them
    assert len(union) > max(own), (len(union), own)


def test_report_is_self_contained(list_run):
    wd, truths, r = list_run
    page = (wd / "results" / "0999995001" / "report.html").read_text()
    assert "<table>" in page and "zbremss.kT" in page and "Reproduce" in page and "Versions" in page
    assert not re.search(r"(src|href)=['\"](http|file|/)", page)          # nothing external
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) >= 7
    for b in images:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"


def test_multi_step_on_its_own(list_run):
    wd, truths, _ = list_run
    lst = wd / "obs_list.txt"
    r = run_cli(["python", str(ROOT / "multi_observation_analysis.py"), "--list", str(lst), "--name", "again",
                 "--workdir", str(wd)])
    assert r.returncode == 0, r.stderr
    assert "zbremss.kT" in r.stdout
    assert (wd / "results" / "multi" / "again" / "table.csv").read_text() == \
        (wd / "results" / "multi" / "four" / "table.csv").read_text()
    r = run_cli(["python", str(ROOT / "multi_observation_analysis.py"), "--list", str(lst), "--name", "x;y",
                 "--workdir", str(wd)])
    assert r.returncode == 2


def _same_column(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object:            # variable-length arrays (RMF MATRIX)
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    return a.tolist() == b.tolist()


def test_killed_spectra_step_resumes_to_identical_results(processed_obs, tmp_path):
    """kill -9 during spectral extraction, re-run: no partial files, same products."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time
    from astropy.io import fits
    wd, truth, paths, _ = processed_obs
    for sub in ("data", "results"):
        shutil.copytree(wd / sub, tmp_path / sub, ignore=shutil.ignore_patterns("spectra", "fit", "report.html"))
    obsid = paths.obsid
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    cmd = [sys.executable, str(ROOT / "spectral_analysis.py"), "--obsid", obsid, "--workdir", str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "results" / obsid / "spectra"
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and any(out.glob("*.rmf"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)                      # mid-way: some products written, some not
    proc.wait()
    assert not (out / "spectra.json").exists()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list(out.glob(".*.part"))
    for name in ("mos1_src_grp.pha", "mos2_bkg.pha", "pn_src_grp.pha", "pn.arf", "mos1.rmf"):
        with fits.open(out / name) as a, fits.open(paths.spectra / name) as b:
            for ha, hb in zip(a[1:], b[1:]):
                assert ha.name == hb.name
                for col in ha.columns.names:
                    assert _same_column(ha.data[col], hb.data[col]), (name, col)


def test_joint_fit_of_the_list(list_run):
    wd, truths, _ = list_run
    lst = wd / "obs_list_joint.txt"
    lst.write_text("0999995001\n0999995002\n")
    r = run_cli(["python", str(ROOT / "multi_observation_analysis.py"), "--list", str(lst), "--name", "joint",
                 "--joint", "--nh", "0.03", "--workdir", str(wd)], timeout=900)
    assert r.returncode == 0, r.stderr
    res = json.loads((wd / "results" / "multi" / "joint" / "joint" / "fit.json").read_text())
    assert res["joint_observations"] == ["0999995001", "0999995002"]
    assert len(res["spectra"]) == 6
    assert sum(k.startswith("cross_norm.") for k in res["parameters"]) == 5
    kt = res["parameters"]["zbremss.kT"]
    assert kt["lower"] <= 5.0 <= kt["upper"]
    xcm = (wd / "results" / "multi" / "joint" / "joint" / "fit.xcm").read_text()
    assert next(line for line in xcm.splitlines() if line.startswith("data ")).count("_src_grp.pha") == 6


def test_report_renders_in_headless_chromium(list_run, tmp_path):
    """Load report.html in Debian's Chromium: no console errors, every image decoded,
    and a non-blank screenshot."""
    import shutil
    import subprocess
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian chromium not installed (.ci/run installs it when running as root)")
    wd, _, _ = list_run
    page = (wd / "results" / "0999995001" / "report.html").read_text()
    probe = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
             " document.body.setAttribute('data-images', imgs.length);"
             " document.body.setAttribute('data-decoded', imgs.filter(i => i.complete && i.naturalWidth > 0).length);"
             " });</script></body>")
    probed = tmp_path / "report_probe.html"
    probed.write_text(page.replace("</body>", probe))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=180)
    n_img = re.search(r'data-images="(\d+)"', dom.stdout)
    n_dec = re.search(r'data-decoded="(\d+)"', dom.stdout)
    assert n_img and n_dec, dom.stderr[-2000:]
    assert int(n_img.group(1)) >= 7 and n_dec.group(1) == n_img.group(1)
    console_errors = [l for l in dom.stderr.splitlines() if "CONSOLE" in l and ("ERROR" in l or "Uncaught" in l)]
    assert not console_errors, console_errors
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,2400",
                    (wd / "results" / "0999995001" / "report.html").as_uri()], capture_output=True, timeout=180)
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.std() > 0.05                       # not a blank page


def test_a_run_logs_each_step_says_a_skipped_camera_once_and_removes_its_lock(tmp_path):
    """Issue 26: results/<OBSID>/logs/<step>.log for every step of a run; the MOS-only
    observation's "pn: no cleaned events" said once on the terminal (the logs keep each);
    the lock file gone at the end; no library chatter on the terminal."""
    obsid = "0999995901"
    simulate_into(tmp_path, obsid=obsid, seed=5, exposure=15000.0, cameras=["mos1", "mos2"], n_point_sources=3)
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), obsid, "logs", "--workdir", str(tmp_path),
                 "--model", "tbabs*zbremss", "--nh", "0.03", "--redshift", "0.05"])
    assert r.returncode == 0, r.stderr
    res = tmp_path / "results" / obsid
    for step in ("filtering", "regions", "spectra", "fit", "report"):
        log = res / "logs" / f"{step}.log"
        assert log.is_file() and log.stat().st_size > 0, step
    said = (r.stdout + r.stderr).count("pn: no cleaned events; camera skipped")
    logged = sum((res / "logs" / f"{s}.log").read_text().count("pn: no cleaned events") for s in ("regions", "spectra"))
    assert said == 1 and logged >= 2
    assert not (res / ".xmmext.lock").exists()
    assert "sherpa" not in r.stderr.lower() and "ds9" not in r.stderr.lower()
    # the report answers first: a summary block before everything else, with kT, its
    # interval and frame, fluxes with band/frame/cosmology, the statistic and the flags
    import html as H
    import shlex
    import subprocess
    page = (res / "report.html").read_text()
    summary = page.split("<div class='summary'>")[1].split("</div>")[0]
    assert page.index("<div class='summary'>") < page.index("<h2>1. Flare filtering")
    assert "kT (zbremss)" in summary and "source rest frame (z = 0.05)" in summary and "90%" in summary
    assert "L 0.1-2.4 keV" in summary and "Planck18" in summary and "flux 0.5-2 keV, absorbed" in summary
    assert "for " in summary and " dof" in summary and "flags" in summary
    # MOS-only data: pn's absence is a note, not a warning
    warnings = page.split("<h2>Warnings</h2>")[1].split("</ul>")[0]
    assert "pn" not in warnings and "pn: no cleaned events" in page.split("<summary>Notes")[1]
    # links to the products lead to files; the commands run as printed, from anywhere
    links = re.findall(r"<a href='([^']+)'>", page)
    assert "fit/fit.xcm" in links and all((res / H.unescape(link)).exists() for link in links)
    cmds = H.unescape(page.split("<h2>Reproduce</h2>")[1].split("<pre>")[1].split("</pre>")[0]).splitlines()
    fit_cmd = next(c for c in cmds if "xspec_analysis.py" in c)
    r = subprocess.run(shlex.split(fit_cmd), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "skipped (up to date)" in r.stdout, r.stdout + r.stderr
    # a step run on its own rebuilds the observation's report and says so
    r = run_cli(["python", "-m", "xmmext", "fit", obsid, "--workdir", str(tmp_path), "--model", "tbabs*zbremss",
                 "--nh", "0.03", "--redshift", "0.05", "--emin", "0.7"])
    assert r.returncode == 0 and "report.html rebuilt with the new fit results" in r.stdout, r.stdout + r.stderr
    assert "0.7-7.0 keV" in (res / "report.html").read_text()
    assert not (res / ".xmmext.lock").exists()
