"""The model is settled before step 1 (issue 23a): an explicit model that cannot be
evaluated stops the run at once (exit 3); with no model and no AtomDB every run falls back
to tbabs*(zbremss+powerlaw) in the rest frame and says so; a --redshift a component
ignores gets a note."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT, assert_one_line_error, run_cli
from xmmext.xspec.atomdb import find_apec_files
from xmmext.core.errors import DependencyError
from xmmext.fitting.model_choice import FALLBACK_MODEL, redshift_notes, settle_model
from xmmext.xspec.expression import parse_model

no_atomdb = pytest.mark.skipif(find_apec_files() is not None, reason="AtomDB is installed here")


@no_atomdb
def test_default_model_falls_back_to_zbremss_without_atomdb():
    s = settle_model(None, 0.15)
    assert s.text == FALLBACK_MODEL == "tbabs*(zbremss+powerlaw)"
    assert s.fallback["requested"] == "tbabs*(apec+powerlaw)" and "AtomDB" in s.fallback["reason"]
    assert any("rest-frame" in n for n in s.notes) and s.fallback_line()
    # the redshift is taken (zbremss has one): no note that it is ignored
    assert not any("observed frame" in n for n in s.notes)


@no_atomdb
def test_explicit_apec_without_atomdb_stops_with_what_to_install():
    with pytest.raises(DependencyError) as exc:
        settle_model("tbabs*(apec+powerlaw)", 0.1)
    assert exc.value.exit_code == 3 and "XMMEXT_ATOMDB" in exc.value.message


def test_redshift_notes():
    bremss = redshift_notes(parse_model("tbabs*bremss"), 0.153)
    assert any("bremss" in n and "observed frame" in n and "1.153" in n for n in bremss)
    assert any("no effect" in n for n in redshift_notes(parse_model("tbabs*powerlaw"), 0.1))
    assert redshift_notes(parse_model("tbabs*zbremss"), 0.1) == []
    assert any("stays at 0" in n for n in redshift_notes(parse_model("tbabs*zbremss"), None))
    assert redshift_notes(parse_model("tbabs*bremss"), 0.0) == []


@no_atomdb
def test_pipeline_stops_before_step_1_on_an_explicit_apec(short_obs, tmp_path):
    wd, _ = short_obs
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "0999990201").symlink_to(wd / "data" / "0999990201")
    r = run_cli(["bash", str(ROOT / "run_extended_source_analysis.sh"), "0999990201", "c", "--model", "tbabs*apec",
                 "--workdir", str(tmp_path)])
    assert_one_line_error(r, 3, "AtomDB")
    assert "XMMEXT_ATOMDB" in r.stderr
    assert not (tmp_path / "results").exists()                     # nothing ran, nothing written


@no_atomdb
@pytest.mark.slow
def test_fit_step_states_the_fallback(processed_obs, tmp_path):
    """The fit step alone, no --model: zbremss at the redshift, said in fit.json, fit.xcm and
    on the terminal; an explicit bremss with a redshift gets the observed-frame note."""
    wd, truth, paths, _ = processed_obs
    out = tmp_path / "fit"
    r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--input", str(paths.spectra), "--output", str(out),
                 "--nh", "0.03", "--redshift", "0.05", "--cameras", "pn"])
    assert r.returncode == 0, r.stderr
    fit = json.loads((out / "fit.json").read_text())
    assert fit["model"] == FALLBACK_MODEL and fit["model_fallback"]["used"] == FALLBACK_MODEL
    assert fit["parameters"]["zbremss.Redshift"] == {**fit["parameters"]["zbremss.Redshift"], "value": 0.05,
                                                     "frozen": True}
    assert "AtomDB" in r.stdout and "rest frame" in r.stdout
    assert "\n# model tbabs*(zbremss+powerlaw) used instead of" in (out / "fit.xcm").read_text()
    r = run_cli(["python", str(ROOT / "xspec_analysis.py"), "--input", str(paths.spectra), "--output",
                 str(tmp_path / "b"), "--nh", "0.03", "--redshift", "0.05", "--cameras", "pn", "--model", "tbabs*bremss"])
    assert r.returncode == 0, r.stderr
    fit = json.loads((tmp_path / "b" / "fit.json").read_text())
    assert fit["model_fallback"] is None and any("observed frame" in n for n in fit["notes"])
