"""fit.xcm (``@fit.xcm`` in XSPEC reproduces the fit) and fit.csv."""
from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from xmmext.xspec.expression import ModelExpression

__all__ = ["SAFE_NAME", "tcl_word", "xcm_text", "model_comment", "csv_text"]


SAFE_NAME = re.compile(r"[A-Za-z0-9_.+/-]+")


def tcl_word(name: str) -> str | None:
    """``name`` as one word of an XSPEC (Tcl) command: as it is when it holds only safe
    characters, else in braces (no substitution of [..] or $ inside); None when even
    braces cannot hold it."""
    if SAFE_NAME.fullmatch(name):
        return name
    if any(c in name for c in "{}\\\n"):
        return None
    return "{" + name + "}"


def xcm_text(result: dict, expr: ModelExpression, opts, folder: Path) -> str:
    """An XSPEC command file that reloads the data and the fitted model: ``@fit.xcm`` in
    XSPEC started in ``folder``, the folder fit.xcm is written to. The spectra are named
    relative to it (never a work-directory path, so nothing in it is substituted by Tcl);
    each spectrum names its background and responses in its header, relative to itself."""
    stat = "cstat" if opts.stat in ("cstat", "wstat") else "chi"
    files = [os.path.relpath(Path(s["file"]).resolve(), Path(folder).resolve()) for s in result["spectra"]]
    lines = [f"# {line}" for line in xcm_header(result, files)]
    lines += [f"# {line}" for line in model_comment(result)]
    lines += [f"statistic {stat}", "method leven 10 0.01", f"abund {opts.abund_table}", "xsect vern",
             "cosmo 67.7 0 0.689", "xset delta 0.01", "systematic 0"]
    words = [tcl_word(f) for f in files]
    if all(words):
        lines.append("data " + " ".join(f"{i}:{i} {w}" for i, w in enumerate(words, 1)))
    else:
        lines.append("# a file name holds braces or backslashes that XSPEC cannot be given safely: "
                     "rename the spectra and load them with the data command")
    if opts.no_background:
        lines += [f"back {i} none" for i in range(1, len(files) + 1)]
    lines.append("ignore " + " ".join(f"{i}:**-{opts.emin} {opts.emax}-**" for i in range(1, len(files) + 1)))
    lines.append("ignore bad")
    lines.append(f"model  constant*{expr.xspec_string()}")
    pars = result["parameters"]
    cams = [s["camera"] for s in result["spectra"]]

    def par_line(name, fixed_val=None):
        rec = pars[name]
        v = rec["value"] if fixed_val is None else fixed_val
        delta = -1 if rec["frozen"] or fixed_val is not None else max(abs(v) * 0.01, 1e-4)
        return f"{v:14.6g} {delta:10.4g}"
    n_model = len(expr.parameters())
    lines.append(f"{1.0:14.6g} {-1:10.4g}")                     # constant of data group 1
    for name in expr.parameters():
        lines.append(par_line(name))
    for k, cam in enumerate(cams[1:], start=2):
        cn = pars.get(f"cross_norm.{cam}", {"value": 1.0})["value"]
        lines.append(f"{cn:14.6g} {0.01:10.4g}")
        for j in range(n_model):
            lines.append(f"= p{j + 2}")
    return "\n".join(lines) + "\n"


def xcm_header(result: dict, files: list[str]) -> list[str]:
    """What the file does, where its data are and what was fitted (comment lines)."""
    st = result["statistic"]
    lines = ["Reloads the data and the best fit of this folder's fit.json: start XSPEC here and type @fit.xcm",
             "data (relative to this folder; each names its background, RMF and ARF in its header):"]
    lines += [f"  {i}: {f} ({s['camera']})" for i, (f, s) in enumerate(zip(files, result["spectra"]), 1)]
    lines.append(f"fitted: {result['model']}, {result['energy_range_keV'][0]}-{result['energy_range_keV'][1]} keV, "
                 f"{st['name']} {st['value']:.2f} for {st['dof']} dof, {result['conf_level']}% intervals in fit.json")
    return lines


def model_comment(result: dict) -> list[str]:
    """Comment lines on the model: the fallback used without AtomDB, and the flags."""
    out = []
    fb = result.get("model_fallback")
    if fb:
        out.append(f"model {fb['used']} used instead of {fb['requested']}: AtomDB absent (rest-frame kT, no lines)")
    for flag in result.get("flags", []):
        out.append(f"flag: {flag}")
    return out


def csv_text(result: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["parameter", "value", "lower", "upper", "frozen", "unit"])
    for name, r in result["parameters"].items():
        w.writerow([name, r["value"], r["lower"], r["upper"], r["frozen"], r["unit"]])
    st = result["statistic"]
    w.writerow(["statistic", st["value"], "", "", "", st["name"]])
    w.writerow(["dof", st["dof"], "", "", "", ""])
    for name, f in result["fluxes"].items():
        w.writerow([f"flux.{name}", f["value"], f["lower"], f["upper"], "", f["unit"]])
    w.writerow(["engine", result["engine"], "", "", "", ""])
    w.writerow(["model", result["model"], "", "", "", ""])
    w.writerow(["energy_range_keV", f"{result['energy_range_keV'][0]}-{result['energy_range_keV'][1]}", "", "", "", ""])
    for s in result["spectra"]:
        w.writerow([f"spectrum.{s['camera']}", s["file"], "", "", "", ""])
    return buf.getvalue()
