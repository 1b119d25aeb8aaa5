"""Issue 14: the whole pipeline killed at five points (inside step 1 after one camera,
step 2 before its record, step 3 before its record, the fit between its products and
fit.json, while report.html is written) and the multi-observation table while it is
written; each resumed run ends identical to a clean run with nothing left over."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import simulate_into
from xmmext.core.paths import ObsPaths
from xmmext.steps import FilterOptions, FitOptions, RunSettings, run_observation
from xmmext.steps.run import STEPS

pytestmark = pytest.mark.slow            # an end-to-end module: outside `-m "not slow"`

OBSID = "0999998101"


def _settings(wd):
    opts = {s.name: s.Options() for s in STEPS}
    opts["filtering"] = FilterOptions(cameras=("mos1", "pn"))
    for name in ("regions", "spectra"):
        opts[name].cameras = ("mos1", "pn")
    opts["fit"] = FitOptions(model="tbabs*zbremss", nh=0.03, redshift=0.05, cameras=("mos1", "pn"))
    return RunSettings(opts, "native", False, str(wd), "resume")


def _records(paths):
    """Every step's record, without what names the work directory (absolute paths, and
    the fingerprints of steps that read a file holding one)."""
    text = {rel: (paths.results / rel).read_text() for rel in
            ("events/filtering.json", "regions/regions.json", "spectra/spectra.json", "fit/fit.json", "report.json")}
    out = {rel: json.loads(t.replace(str(paths.workdir), "<wd>")) for rel, t in text.items()}
    for rel, rec in out.items():
        for r in (rec.values() if rel.startswith("events") else [rec]):
            if rel != "events/filtering.json":
                r["step"].pop("fingerprint")
                r["step"].pop("inputs")
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    wd = tmp_path_factory.mktemp("clean")
    simulate_into(wd, obsid=OBSID, seed=5, exposure=6000.0, cameras=("mos1", "pn"))
    run_observation(OBSID, _settings(wd), echo=False)
    return wd


def _kill(monkeypatch, module, name, after_calls=0, stale=None):
    """Make ``module.name`` raise KeyboardInterrupt (after ``after_calls`` good calls),
    leaving a stale temporary file as a SIGKILL would."""
    import importlib
    mod = importlib.import_module(module)
    original, calls = getattr(mod, name), []

    def killed(*a, **k):
        if len(calls) >= after_calls:
            if stale is not None:
                stale.parent.mkdir(parents=True, exist_ok=True)
                stale.write_text("half")
            raise KeyboardInterrupt
        calls.append(1)
        return original(*a, **k)
    monkeypatch.setattr(mod, name, killed)


def test_killed_at_five_points_resumes_to_the_clean_result(clean, tmp_path, monkeypatch):
    wd = tmp_path / "w"
    shutil.copytree(clean / "data", wd / "data")
    paths = ObsPaths.of(OBSID, wd)
    points = [("xmmext.events.cleaning", "_filter_camera", 1, paths.events / ".pn_clean_evt.fits.xmmext-k1.part"),
              ("xmmext.sky.regions", "plot_profile", 0, paths.regions / ".profile.png.xmmext-k2.part"),
              ("xmmext.spectra.extraction", "_plot", 0, None),
              ("xmmext.fitting.plots", "plot_fit", 0, paths.fit / ".fit.png.xmmext-k4.part"),
              ("xmmext.report", "write_text", 0, paths.results / ".report.html.xmmext-k5.part")]
    for module, name, after, stale in points:
        with monkeypatch.context() as m:
            _kill(m, module, name, after, stale)
            with pytest.raises(KeyboardInterrupt):
                run_observation(OBSID, _settings(wd), echo=False)
    records = run_observation(OBSID, _settings(wd), echo=False)
    assert set(records) == {"filtering", "regions", "spectra", "fit", "report"}
    assert records["fit"].summary["statistic"]["dof"] > 0          # the records themselves
    assert not list(wd.rglob("*.part"))
    assert (paths.fit / "fit.png").exists() and (paths.results / "report.html").exists()
    a, b = _records(ObsPaths.of(OBSID, clean)), _records(paths)
    for rel in a:
        assert a[rel] == b[rel], rel
    # a run now finds every step up to date
    records = run_observation(OBSID, _settings(wd), echo=False)
    assert all(r.skipped for r in records.values()), {k: r.outcome() for k, r in records.items()}


def test_multi_table_killed_while_written(clean, tmp_path, monkeypatch):
    import contextlib
    import xmmext.core.fileio as F
    from xmmext.pipeline.many import combine
    wd = tmp_path / "w"
    shutil.copytree(clean, wd)
    first = combine([OBSID], "t", wd)
    out = wd / "results/multi/t"
    table = (out / "table.csv").read_text()
    original = F.atomic_path

    @contextlib.contextmanager
    def killed(dest):
        with original(dest) as tmp:
            if dest.name == "table.ecsv":          # table.csv is written, table.ecsv half
                tmp.write_text("half")
                shutil.copyfile(tmp, out / ".table.ecsv.xmmext-k6.part")   # as a SIGKILL leaves it
                raise KeyboardInterrupt
            yield tmp
    monkeypatch.setattr(F, "atomic_path", killed)
    with pytest.raises(KeyboardInterrupt):
        combine([OBSID], "t", wd, force=True)
    monkeypatch.undo()
    assert not (out / "summary.json").exists()      # the record goes first: the killed combine is not "done"
    again = combine([OBSID], "t", wd)
    assert again == first and (out / "table.csv").read_text() == table
    assert not list(out.glob("*.part")) and not list(out.glob(".*.part"))


def test_combine_is_a_step(clean, tmp_path):
    """The combine step is up to date with the same fits, and redone when a fit changes."""
    import json
    from xmmext.pipeline.many import combine
    wd = tmp_path / "w"
    shutil.copytree(clean, wd)
    first = combine([OBSID], "t", wd)
    rec = wd / "results/multi/t/summary.json"
    stamp = rec.stat().st_mtime_ns
    assert combine([OBSID], "t", wd) == first and rec.stat().st_mtime_ns == stamp
    fit_json = wd / "results" / OBSID / "fit" / "fit.json"
    fit = json.loads(fit_json.read_text())
    kt = next(k for k in fit["parameters"] if k.endswith(".kT"))
    for key in ("value", "lower", "upper"):
        fit["parameters"][kt][key] += 1.0
    fit_json.write_text(json.dumps(fit))
    again = combine([OBSID], "t", wd)
    assert again["weighted_means_1sigma"][kt]["mean"] == pytest.approx(first["weighted_means_1sigma"][kt]["mean"] + 1)
