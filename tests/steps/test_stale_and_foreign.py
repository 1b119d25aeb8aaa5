"""Issue 27 (the HIGH items): a camera whose input is gone leaves no products behind that
a later step would use; another observation's event list is refused; files a user names
are never overwritten."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from conftest import ROOT, assert_one_line_error, run_cli, simulate_into

pytestmark = pytest.mark.slow            # whole runs of a small simulated observation

OBSID = "0999997701"
RUN = ["--model", "tbabs*zbremss", "--nh", "0.03", "--redshift", "0.05"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("stale")
    simulate_into(wd, obsid=OBSID, seed=3, exposure=12000.0, cameras=["mos1", "pn"], n_point_sources=2)
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), OBSID, "s", "--workdir", str(wd), *RUN])
    assert r.returncode == 0, r.stderr
    return wd


def _copy(run_dir, tmp_path):
    wd = tmp_path / "w"
    shutil.copytree(run_dir, wd, symlinks=True)
    return wd


def _pipeline(wd, *more):
    return run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), OBSID, "s", "--workdir", str(wd),
                    *RUN, *more])


def test_a_camera_whose_list_is_gone_leaves_the_fit(run_dir, tmp_path):
    wd = _copy(run_dir, tmp_path)
    res = wd / "results" / OBSID
    assert {s["camera"] for s in json.loads((res / "fit" / "fit.json").read_text())["spectra"]} == {"mos1", "pn"}
    (wd / "data" / OBSID / "event" / "pn_evt.fits").unlink()
    r = _pipeline(wd)
    assert r.returncode == 0, r.stderr
    fit = json.loads((res / "fit" / "fit.json").read_text())
    assert [s["camera"] for s in fit["spectra"]] == ["mos1"]
    assert not list((res / "spectra").glob("pn*")) and not list((res / "events").glob("pn_*"))


def test_a_corrupt_list_takes_its_camera_out_too(run_dir, tmp_path):
    wd = _copy(run_dir, tmp_path)
    ev = wd / "data" / OBSID / "event" / "mos1_evt.fits"
    ev.write_bytes(ev.read_bytes()[:5000])            # truncated: not a readable event list
    r = _pipeline(wd)
    fit = json.loads((wd / "results" / OBSID / "fit" / "fit.json").read_text())
    assert r.returncode == 0 and [s["camera"] for s in fit["spectra"]] == ["pn"], r.stderr


def test_another_observations_list_is_refused(run_dir, tmp_path):
    wd = _copy(run_dir, tmp_path)
    other = tmp_path / "other"
    simulate_into(other, obsid="0999997702", seed=4, exposure=3000.0, cameras=["pn"], n_point_sources=0,
                  ra_pnt=151.5, dec_pnt=3.2)
    shutil.copy(other / "data" / "0999997702" / "event" / "pn_evt.fits",
                wd / "data" / OBSID / "event" / "P0999997702PNS001PIEVLI0000.FIT")
    r = _pipeline(wd)
    assert_one_line_error(r, 2, "belongs to observation 0999997702")
    assert "P0999997702PNS001PIEVLI0000.FIT" in r.stderr


def test_a_users_response_in_the_output_folder_is_not_overwritten(run_dir, tmp_path):
    wd = _copy(run_dir, tmp_path)
    rmf = wd / "results" / OBSID / "spectra" / "pn.rmf"
    before = hashlib.sha256(rmf.read_bytes()).hexdigest()
    r = run_cli(["python", str(ROOT / "spectral_analysis.py"), OBSID, "--workdir", str(wd), "--rmf", f"pn={rmf}",
                 "--force"])
    assert_one_line_error(r, 2, "would be overwritten")
    assert hashlib.sha256(rmf.read_bytes()).hexdigest() == before
