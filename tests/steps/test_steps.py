"""Issue 12: one Step shape, one up-to-date rule, and the stale results it prevents.

Each stale case re-runs exactly the step whose inputs or options changed and ends with
the same record as a clean run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from conftest import ROOT, run_cli, simulate_into
from xmmext.core.paths import ObsPaths
from xmmext.steps import (FilterOptions, FilteringStep, FitOptions, FitStep, RegionOptions, SpectraOptions,
                          SpectraStep, execute, is_up_to_date, run_filtering, run_fit, run_regions, run_spectra)

OBSID = "0999997001"
MODEL = "tbabs*zbremss"
CAMS = ("pn",)


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    """A short simulated observation (MOS1 and pn lists) through steps 1-4 for pn, in-process."""
    wd = tmp_path_factory.mktemp("steps")
    simulate_into(wd, obsid=OBSID, seed=11, exposure=8000.0, cameras=("mos1", "pn"))
    paths = ObsPaths.of(OBSID, wd)
    run_filtering(paths, FilterOptions(cameras=CAMS))
    run_regions(paths, RegionOptions(cameras=CAMS))
    run_spectra(paths, SpectraOptions(cameras=CAMS))
    run_fit(paths.spectra, paths.fit, FitOptions(model=MODEL, nh=0.03, redshift=0.05, cameras=CAMS))
    return wd


@pytest.fixture
def copy(stepped, tmp_path):
    """A private copy of the processed observation (tests change it)."""
    wd = tmp_path / "w"
    shutil.copytree(stepped, wd)
    return ObsPaths.of(OBSID, wd)


def _fit_plan(paths, **kw):
    return FitStep().plan(None, FitOptions(input=str(paths.spectra), output=str(paths.fit), model=MODEL,
                                           cameras=CAMS, **{"nh": 0.03, "redshift": 0.05, **kw}))


def _without_record(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "step"}


@pytest.mark.slow
def test_a_copied_workdir_is_up_to_date(copy):
    """Fingerprints hold file contents and paths relative to the record: a copied (or
    moved) work directory needs no re-run."""
    assert is_up_to_date(FilteringStep().plan(copy, FilterOptions(cameras=CAMS), "native"))
    rec = execute(_fit_plan(copy))
    assert rec.skipped


def test_changed_nh_refits(copy):
    """--nh 0.5 after --nh 0.03 is a new fit (it used to print 'up to date' and keep 0.03)."""
    plan = _fit_plan(copy, nh=0.5)
    assert not is_up_to_date(plan)
    rec = execute(plan)
    assert not rec.skipped and rec.summary["parameters"]["TBabs.nH"]["value"] == pytest.approx(0.5)
    assert json.loads((copy.fit / "fit.json").read_text())["parameters"]["TBabs.nH"]["value"] == pytest.approx(0.5)
    assert execute(_fit_plan(copy, nh=0.5)).skipped          # and now it is up to date


@pytest.mark.slow
def test_region_file_edited_in_place_redoes_the_spectra(copy, tmp_path):
    user = tmp_path / "my_src.reg"
    shutil.copyfile(copy.regions / "src.reg", user)
    opts = SpectraOptions(src_reg=str(user), cameras=("pn",))
    first = execute(SpectraStep().plan(copy, opts, "native"))
    text = user.read_text()
    r_old = float(text.split("circle(")[1].split(")")[0].split(",")[2])
    user.write_text(text.replace(f"{r_old:g}", f"{0.5 * r_old:g}", 1) if f"{r_old:g}" in text else
                    text.replace(str(r_old), str(0.5 * r_old), 1))
    plan = SpectraStep().plan(copy, opts, "native")
    assert not is_up_to_date(plan)                           # edited in place: a new fingerprint
    second = execute(plan)
    assert not second.skipped
    assert second.summary["cameras"]["pn"]["counts"] < first.summary["cameras"]["pn"]["counts"]
    # ... and the result is the one a clean run gives
    shutil.rmtree(copy.spectra)
    clean = execute(SpectraStep().plan(copy, opts, "native"))
    assert clean.summary == second.summary


def test_replaced_response_refits(copy):
    assert is_up_to_date(_fit_plan(copy))
    with fits.open(copy.spectra / "pn.rmf") as h:
        h[0].header["COMMENT"] = "replaced by the user"
        h.writeto(copy.spectra / "pn.rmf", overwrite=True)
    assert not is_up_to_date(_fit_plan(copy))
    assert not execute(_fit_plan(copy)).skipped


def test_forced_run_killed_after_one_camera_is_redone(copy, monkeypatch):
    """--force with new options killed after the first camera left new per-camera files
    under the old record, and the next plain run trusted the mix. Now the record goes
    first, so the plain run redoes the step and ends identical to the clean run."""
    import xmmext.events.cleaning as F
    two = ("mos1", "pn")
    clean = run_filtering(copy, FilterOptions(cameras=two))          # the clean run
    clean_events = fits.getdata(copy.clean_events("mos1"), "EVENTS")
    original, calls = F._filter_camera, []

    def killed_after_first(*a, **k):
        if calls:
            raise KeyboardInterrupt
        calls.append(a[1])
        return original(*a, **k)
    monkeypatch.setattr(F, "_filter_camera", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        run_filtering(copy, FilterOptions(method="fixed", threshold_mos=0.2, cameras=two), force=True)
    monkeypatch.setattr(F, "_filter_camera", original)
    assert not (copy.events / "filtering.json").exists()       # no record: nothing downstream trusts it
    assert not list(copy.events.glob(".*.part"))
    again = run_filtering(copy, FilterOptions(cameras=two))
    assert again == clean
    assert np.array_equal(fits.getdata(copy.clean_events("mos1"), "EVENTS"), clean_events)


def test_kill_before_the_record_or_a_lost_output_refits(copy, monkeypatch):
    """A fit killed after its products but before fit.png/fit.json is redone (fit.json is
    the record, written last); a complete fit whose fit.png was deleted is redone too."""
    import xmmext.fitting.plots as P
    monkeypatch.setattr(P, "plot_fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        execute(_fit_plan(copy), force=True)
    assert not (copy.fit / "fit.json").exists()
    monkeypatch.undo()
    rec = execute(_fit_plan(copy))
    assert not rec.skipped and (copy.fit / "fit.png").exists()
    (copy.fit / "fit.png").unlink()
    assert not is_up_to_date(_fit_plan(copy))
    execute(_fit_plan(copy))
    assert (copy.fit / "fit.png").exists()


def test_fit_leaves_the_users_sherpa_session_alone(copy):
    from sherpa.astro import ui
    ui.clean()
    ui.load_arrays(7, [1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    ui.set_source(7, ui.polynom1d.users_model)
    ui.set_stat("leastsq")
    execute(_fit_plan(copy, nh=0.04))
    assert ui.list_data_ids() == [7]
    assert "users_model" in ui.get_source(7).name
    assert ui.get_stat_name() == "leastsq"
    ui.clean()


@pytest.mark.slow
def test_pipeline_forwards_step_options_and_reruns_only_the_fit(copy):
    """run_extended_source_analysis.sh <OBSID> <name> --radius 3 --group mincounts=40 --emin 0.7
    reaches the steps that own them; then only --nh changes: only the fit is redone."""
    wd = str(copy.workdir)
    base = ["bash", str(ROOT / "run_extended_source_analysis.sh"), OBSID, "opts", "--workdir", wd,
            "--backend", "native", "--cameras", "pn", "--model", MODEL]
    r = run_cli(base + ["--radius", "3", "--group", "mincounts=40", "--emin", "0.7", "--nh", "0.03"])
    assert r.returncode == 0, r.stderr
    reg = json.loads((copy.regions / "regions.json").read_text())
    spec = json.loads((copy.spectra / "spectra.json").read_text())
    fit = json.loads((copy.fit / "fit.json").read_text())
    assert reg["radius_arcmin"] == pytest.approx(3.0) and reg["radius_from"] == "user"
    assert spec["grouping"] == "mincounts=40,oversample=3"     # the default oversample kept
    assert fit["energy_range_keV"] == [0.7, 7.0]
    assert "filtering  skipped (up to date)" in r.stdout         # step-1 options unchanged
    page = (copy.results / "report.html").read_text()
    assert "--radius 3.0" in page and "--group mincounts=40" in page and "--emin 0.7" in page
    r = run_cli(base + ["--radius", "3", "--group", "mincounts=40", "--emin", "0.7", "--nh", "0.5"])
    assert r.returncode == 0, r.stderr
    for step in ("filtering", "regions", "spectra"):
        assert f"{step:<10} skipped (up to date)" in r.stdout, r.stdout
    assert "fit        done" in r.stdout and "report     done" in r.stdout
    fit = json.loads((copy.fit / "fit.json").read_text())
    assert fit["parameters"]["TBabs.nH"]["value"] == pytest.approx(0.5)


def test_step_scripts_and_pipeline_share_generated_options():
    """Each step's parser is generated from its Options; the pipeline offers every option
    a step forwards, with the dataclass default."""
    from dataclasses import fields
    from xmmext.pipeline.run import build_parser
    from xmmext.steps.base import flag_of, option_fields
    from xmmext.steps.run import STEPS
    pipeline_flags = {a for action in build_parser()._actions for a in action.option_strings}
    for step in STEPS:
        for f in option_fields(step.Options):
            if f.metadata["pipeline"]:
                assert flag_of(f) in pipeline_flags, (step.name, f.name)
    assert {f.name for f in fields(FitOptions)} >= {"model", "nh", "redshift", "emin", "emax"}
    r = run_cli(["python", str(ROOT / "spectral_analysis.py"), "--help"])
    assert "--group" in r.stdout and "mincounts=25,oversample=3" in r.stdout
    for script in (["xspec_analysis.py"], ["xspec_analysis.py", "--profile"], ["run_extended_source_analysis.sh"]):
        cmd = ["bash" if script[0].endswith(".sh") else "python", str(ROOT / script[0]), *script[1:], "--help"]
        r = run_cli(cmd)                     # every generated parser prints its help
        assert r.returncode == 0 and "usage:" in r.stdout and "(%)" in r.stdout, (script, r.stderr)


def test_no_import_cycles_and_no_oversized_modules():
    import ast
    pkg = ROOT / "xmmext"
    mods = {}
    for f in pkg.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        assert len(f.read_text().splitlines()) <= 520, f"{f} is over ~500 lines"
        pkg_name = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg_name.split(".")[:len(pkg_name.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                graph[m] |= {t for t in (subs if len(subs) == len(node.names) else [target] + subs)
                             if t in mods and t != m}
            elif isinstance(node, ast.Import):
                graph[m] |= {a.name for a in node.names if a.name in mods and a.name != m}

    def in_a_cycle(start):
        todo, seen = list(graph[start]), set()
        while todo:
            n = todo.pop()
            if n == start:
                return True
            if n not in seen:
                seen.add(n)
                todo.extend(graph[n])
        return False
    cycles = sorted(m for m in graph if in_a_cycle(m))
    assert not cycles, cycles
    assert not any("import common_functions" in f.read_text() or "from common_functions" in f.read_text()
                   for f in mods.values())


def test_bad_model_leaves_the_previous_fit(copy):
    """The spectra, their files and the model are checked in the plan, before the old
    record is removed: a typo in --model does not cost the user the previous fit."""
    from xmmext.core.errors import UsageError
    before = (copy.fit / "fit.json").read_text()
    with pytest.raises(UsageError, match="model expression"):
        FitStep().plan(None, FitOptions(input=str(copy.spectra), output=str(copy.fit), model="tbabs*(zbremss+",
                                        cameras=CAMS))
    assert (copy.fit / "fit.json").read_text() == before


def test_the_run_names_no_step(monkeypatch):
    """What a run does with a step comes from the step itself: an optional step added to
    the registry gets its --<name> in the pipeline and runs only when asked."""
    from xmmext.pipeline.run import build_parser
    from xmmext.steps import registry
    from xmmext.steps.base import Step
    from xmmext.steps.run import RunSettings

    class Extra(Step):
        name = "extra"
        optional = True
        title = "an extra product"
    extra = Extra()
    monkeypatch.setattr(registry, "OBSERVATION_STEPS", registry.OBSERVATION_STEPS + (extra,))
    assert "--extra" in build_parser().format_help()
    assert not RunSettings().runs(extra) and RunSettings(extra=("extra",)).runs(extra)
    assert all(RunSettings().runs(s) for s in registry.OBSERVATION_STEPS if not s.optional)
