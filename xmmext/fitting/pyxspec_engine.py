"""The fit as a PyXspec script (engine ``pyxspec``, when HEASoft's PyXspec imports).
NOT RUN here (no HEASoft): tested on the statements it sends."""
from __future__ import annotations

import os
from pathlib import Path

from xmmext.core.errors import UsageError
from xmmext.xspec.expression import ABSORBERS, ModelExpression
from xmmext.fitting.fluxes import flux_table
from xmmext.fitting.writers import SAFE_NAME

__all__ = ["spectra_folder_and_names", "unsafe_names", "pyxspec_script", "error_parameters", "run_pyxspec"]


def spectra_folder_and_names(spectra: list[tuple[str, Path]]) -> tuple[Path, list[str]]:
    """The folder the spectra share and their names relative to it: XSPEC is given only
    these names (no work-directory path reaches its command parser)."""
    folder = Path(os.path.commonpath([str(Path(p).resolve().parent) for _, p in spectra]))
    return folder, [os.path.relpath(Path(p).resolve(), folder) for _, p in spectra]


def unsafe_names(names: list[str]) -> list[str]:
    return [n for n in names if not SAFE_NAME.fullmatch(n)]


def pyxspec_script(spectra: list[tuple[str, Path]], expr: ModelExpression, opts,
                   script_dir: Path | None = None) -> list[str]:
    """The PyXspec statements for the same joint fit; they change to the spectra's folder
    and load the spectra by relative name. Written as a file (``script_dir``: its folder)
    the folder is found from the script's own place, so it runs from anywhere and after
    the results are moved; executed in-process (the pyxspec engine) it is the absolute one."""
    conf_delta = {90: 2.706, 68: 1.0, 95: 3.841, 99: 6.635}[opts.conf]
    folder, names = spectra_folder_and_names(spectra)
    bad = unsafe_names(names)
    if script_dir is None:
        lines = ["import os", f"os.chdir({str(folder)!r})"]
    else:
        rel = os.path.relpath(folder, Path(script_dir).resolve())
        lines = ["import os", "# the spectra, relative to this script (they name their background and responses)",
                 f"os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), {rel!r}))"]
    if bad:
        lines.append(f"raise SystemExit('rename {', '.join(bad)}: XSPEC cannot be given these names safely')")
    lines += ["import xspec",
             "xspec.Xset.chatter = 0",
             f"xspec.Xset.abund = {opts.abund_table!r}",
             "xspec.Xset.xsect = 'vern'",
             "xspec.AllData.clear()",
             "xspec.AllModels.clear()",
             f"xspec.AllData({' '.join(f'{i}:{i} {n}' for i, n in enumerate(names, 1))!r})"]
    if opts.no_background:
        lines += [f"xspec.AllData({i}).background = None" for i in range(1, len(spectra) + 1)]
    lines += [f"xspec.AllData.ignore('**-{opts.emin} {opts.emax}-**')", "xspec.AllData.ignore('bad')",
              f"m = xspec.Model({('constant*' + expr.xspec_string())!r})"]
    npar_total = 1 + len(expr.parameters())
    lines.append("m.setPars({1: '1 -1'})")
    idx = 2
    for c in expr.components:
        for p in c.parameter_names():
            low = p.lower()
            if low == "nh" and c.xspec_name.lower() in ABSORBERS and opts.nh is not None:
                frozen = not opts.nh_free
                lines.append(f"m.setPars({{{idx}: '{opts.nh} {'-1' if frozen else '0.01'}'}})")
            elif low == "redshift" and opts.redshift is not None:
                lines.append(f"m.setPars({{{idx}: '{opts.redshift} -1'}})")
            elif low.startswith("abundanc"):
                lines.append(f"m({idx}).frozen = False")
            idx += 1
    for i in range(2, len(spectra) + 1):
        lines.append(f"xspec.AllModels({i})(1).untie()")
        lines.append(f"xspec.AllModels({i})(1).frozen = False")
    stat = "cstat" if opts.stat in ("cstat", "wstat") else "chi"
    lines += [f"xspec.Fit.statMethod = {stat!r}", "xspec.Fit.query = 'yes'", "xspec.Fit.nIterations = 1000",
              "xspec.Fit.perform()",
              f"xspec.Fit.error('maximum 1000 {conf_delta} {error_parameters(npar_total, len(spectra))}')"]
    if opts.goodness:
        # percentage of simulations with a statistic below the data's, each refitted
        lines.append(f"goodness_percent = xspec.Fit.goodness({opts.goodness}, sim=False, fit=True)")
    return lines


def error_parameters(npar_total: int, n_spectra: int) -> str:
    """XSPEC's numbers of every parameter the errors are wanted for: the model's (data
    group 1, after its constant) and each later group's cross-normalisation (its constant;
    the rest of its parameters are tied to group 1's)."""
    return " ".join([f"2-{npar_total}"] + [str((g - 1) * npar_total + 1) for g in range(2, n_spectra + 1)])


def run_pyxspec(spectra, expr, opts) -> dict:
    """Execute the PyXspec script and read back values and errors (in the spectra's
    folder; the working directory is restored afterwards)."""
    bad = unsafe_names(spectra_folder_and_names(spectra)[1])
    if bad:
        raise UsageError(f"file names XSPEC cannot be given safely: {', '.join(bad)}; rename them "
                         "(letters, digits, _ . + - /) or use --engine sherpa")
    ns: dict = {}
    cwd = os.getcwd()
    try:
        exec("\n".join(pyxspec_script(spectra, expr, opts)), ns)   # noqa: S102 - our own statements
    finally:
        os.chdir(cwd)
    xspec = ns["xspec"]
    m = ns["m"]
    params, idx = {}, 2
    for c in expr.components:
        for pname in c.parameter_names():
            par = m(idx)
            lo, hi = par.error[0], par.error[1]
            params[f"{c.name}.{pname}"] = {"value": par.values[0], "lower": None if par.frozen else lo,
                                           "upper": None if par.frozen else hi, "frozen": bool(par.frozen),
                                           "unit": par.unit}
            idx += 1
    values = {k: v["value"] for k, v in params.items()}
    goodness = ({"method": "XSPEC goodness (nosim, refitted)", "n_simulations": opts.goodness,
                 "percent_below_observed": float(ns["goodness_percent"])} if "goodness_percent" in ns else None)
    return {"engine": "pyxspec", "goodness": goodness, "model": expr.text, "model_xspec": expr.xspec_string(),
            "statistic": {"name": xspec.Fit.statMethod, "value": xspec.Fit.statistic, "dof": xspec.Fit.dof},
            "parameters": params, "conf_level": opts.conf, "energy_range_keV": [opts.emin, opts.emax],
            "abund_table": opts.abund_table, "spectra": [{"camera": c, "file": str(p)} for c, p in spectra],
            "fluxes": flux_table(expr, values, [], None, opts)}

