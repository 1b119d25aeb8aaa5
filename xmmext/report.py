"""report.html: one self-contained page per observation (images embedded as base64)."""
from __future__ import annotations

import base64
import html
import platform
from importlib import metadata
from pathlib import Path

from xmmext.core.fileio import read_record, write_text
from xmmext.core.paths import ObsPaths

__all__ = ["PACKAGES", "build_report"]

PACKAGES = ("numpy", "scipy", "astropy", "regions", "photutils", "sherpa", "xspectrampoline", "matplotlib")


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return f"<p class='missing'>{html.escape(alt)}: not produced</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'><figcaption>{html.escape(alt)}</figcaption></figure>"


def _versions() -> dict:
    from xmmext.core.version import __version__
    out = {"xmmext": __version__, "python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "-"
    return out


def _profile_section(paths: ObsPaths) -> str:
    """The temperature profile, when it was made (``--profile``)."""
    prof = read_record(paths.results / "profile" / "profile.json")
    if not prof.get("annuli"):
        return ""
    rows = []
    for a in prof["annuli"]:
        kt = a["kT"]
        err = ("unbounded" if kt["lower"] is None or kt["upper"] is None
               else f"{kt['lower']:.2f} .. {kt['upper']:.2f}")
        rows.append(f"<tr><td>{a['r_in_arcmin']:.2f}-{a['r_out_arcmin']:.2f}</td><td>{kt['value']:.2f}</td>"
                    f"<td>{err}</td><td>{a['sn']:.0f}</td><td>{html.escape(a['folder'])}</td>"
                    f"<td class='warn'>{'<br>'.join(html.escape(f) for f in a.get('flags', []))}</td></tr>")
    return (f"<h2>Temperature profile: {html.escape(prof.get('model', '-'))}</h2>"
            f"<p>annuli for S/N {prof.get('target_sn', 0):g} in 0.3-2 keV; errors at {prof.get('conf_level', '-')}%.</p>"
            "<table><tr><th>radius (arcmin)</th><th>kT (keV)</th><th>interval</th><th>S/N</th><th>folder</th>"
            "<th>flags</th></tr>"
            f"{''.join(rows)}</table>{_img(paths.results / 'profile' / 'profile.png', 'temperature profile')}")


def _flags(flags) -> str:
    """What makes the numbers doubtful, or that nothing does."""
    if flags is None:
        return ""
    if not flags:
        return "<p>Flags: none (nothing doubtful found).</p>"
    return ("<p class='warn'><b>Flags</b> (the numbers below are doubtful):</p><ul class='warn'>"
            + "".join(f"<li>{html.escape(f)}</li>" for f in flags) + "</ul>")


def _fallback(fit: dict) -> str:
    """The model used without AtomDB, said where the fit's numbers are."""
    fb = fit.get("model_fallback")
    if not fb:
        return ""
    return (f"<p class='warn'>Model {html.escape(fb['used'])} instead of {html.escape(fb['requested'])}: "
            f"{html.escape(fb['reason'])}.</p>")


def build_report(paths: ObsPaths, name: str, commands: list[str]) -> Path:
    """Write results/<OBSID>/report.html from the products of every step."""
    filt, reg = read_record(paths.events / "filtering.json"), read_record(paths.regions / "regions.json")
    spec, fit = read_record(paths.spectra / "spectra.json"), read_record(paths.fit / "fit.json")
    warnings, notes = _warnings_and_notes(filt, reg, spec, fit)
    rows = []
    for pname, p in fit.get("parameters", {}).items():
        err = "frozen" if p["frozen"] else (
            f"{p['lower']:.4g} .. {p['upper']:.4g}" if p["lower"] is not None and p["upper"] is not None else "unbounded")
        rows.append(f"<tr><td>{html.escape(pname)}</td><td>{p['value']:.5g}</td><td>{err}</td><td>{html.escape(p['unit'])}</td></tr>")
    flux_rows = [f"<tr><td>{html.escape(k)}</td><td>{v['value']:.4g}</td><td>"
                 f"{'' if v['lower'] is None else format(v['lower'], '.4g')} .. {'' if v['upper'] is None else format(v['upper'], '.4g')}"
                 f"</td><td>{html.escape(v['unit'])}</td></tr>" for k, v in fit.get("fluxes", {}).items()]
    filt_rows = [f"<tr><td>{c}</td><td>{s.get('method', '-')}</td><td>{s.get('exposure_before_s', 0):.0f}</td>"
                 f"<td>{s.get('exposure_after_s', 0):.0f}</td><td>{s.get('events_after', '-')}</td></tr>"
                 for c, s in filt.items() if s.get("status") == "ok"]
    st = fit.get("statistic", {})
    lcs = "".join(_img(p, f"{p.name[:-len('_lc.png')]} light curve and flare cut")
                  for c, s in filt.items() if isinstance(s, dict) and s.get("status") == "ok"
                  for p in (sorted(paths.events.glob(f"{c}*_lc.png")) or [paths.events / f"{c}_lc.png"]))
    vers = "".join(f"<li>{html.escape(k)} {html.escape(v)}</li>" for k, v in _versions().items())
    cmds = "\n".join(html.escape(c) for c in commands)
    centre = reg.get("center", {})
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)} - XMM {paths.obsid}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #aaa;padding:3px 8px}}.warn{{color:#a40}}
figure{{display:inline-block;margin:0.5em;max-width:48%}}
.summary{{background:#f3f6fa;border:1px solid #9ab;padding:0.3em 1em 1em}}.summary th{{text-align:left}}</style></head>
<body><h1>{html.escape(name)}: XMM-Newton observation {paths.obsid}</h1>
{_summary(paths, name, filt, reg, fit)}
<h2>Warnings</h2><ul class="warn">{''.join(f'<li>{html.escape(w)}</li>' for w in warnings) or '<li>none: nothing to act on</li>'}</ul>
<details><summary>Notes ({len(notes)})</summary><ul>{''.join(f'<li>{html.escape(n)}</li>' for n in notes)}</ul></details>
<h2>1. Flare filtering</h2><table><tr><th>camera</th><th>method</th><th>exposure before (s)</th><th>after (s)</th><th>events kept</th></tr>{''.join(filt_rows)}</table>{lcs}
<h2>2. Regions</h2><p>centre RA {centre.get('ra', 0):.5f}, Dec {centre.get('dec', 0):.5f} ({html.escape(str(centre.get('from', '')))});
radius {reg.get('radius_arcmin', 0):.2f}' ({html.escape(str(reg.get('radius_from', '')))}); background {reg.get('bkg_inner_arcmin', 0):.2f}'-{reg.get('bkg_outer_arcmin', 0):.2f}';
{len(reg.get('excluded', []))} point sources excluded.</p>
{_img(paths.regions / 'regions.png', 'EPIC image with regions')}{_img(paths.regions / 'profile.png', 'radial profile')}
<h2>3. Spectra</h2>{_img(paths.spectra / 'spectra.png', 'source and scaled background spectra')}
<h2>4. Fit: {html.escape(fit.get('model', '-'))} ({html.escape(fit.get('engine', '-'))})</h2>{_fallback(fit)}{_flags(fit.get('flags'))}
<p>{html.escape(str(st.get('name', '')))} = {st.get('value', 0):.1f} for {st.get('dof', 0)} degrees of freedom;
errors at {fit.get('conf_level', '-')}%; {fit.get('energy_range_keV', ['-', '-'])[0]}-{fit.get('energy_range_keV', ['-', '-'])[1]} keV.</p>
<table><tr><th>parameter</th><th>value</th><th>interval</th><th>unit</th></tr>{''.join(rows)}</table>
<h3>Fluxes</h3><table><tr><th>band</th><th>value</th><th>interval</th><th>unit</th></tr>{''.join(flux_rows)}</table>
{_img(paths.fit / 'fit.png', 'folded spectra, model and residuals')}
{_profile_section(paths)}
{_files(paths)}
<h2>Reproduce</h2><p>Each step on its own, with this run's options (as the steps' records keep them):</p><pre>{cmds}</pre><h2>Versions</h2><ul>{vers}</ul></body></html>
"""
    dest = paths.results / "report.html"
    write_text(dest, page)
    return dest


# --- the summary, what to act on, the files ----------------------------------------------------
def _warnings_and_notes(filt: dict, reg: dict, spec: dict, fit: dict) -> tuple[list, list]:
    """Warnings: what a user must act on (a camera that failed on data it has, the
    regions' warnings); notes: the rest (a camera the observation does not have, how the
    fit was made)."""
    warnings, notes = [], []
    for cam, s in filt.items():
        if not isinstance(s, dict):
            continue
        if s.get("status") != "ok":
            (notes if _absent(s.get("reason")) else warnings).append(f"filtering {cam}: {s.get('reason')}")
        if s.get("note"):
            notes.append(f"filtering {cam}: {s['note']}")
    warnings += [f"regions: {w}" for w in reg.get("warnings", [])]
    for cam, s in spec.get("cameras", {}).items():
        if s.get("status") != "ok":
            (notes if _absent(s.get("reason")) else warnings).append(f"spectra {cam}: {s.get('reason')}")
    notes += [f"fit: {n}" for n in fit.get("notes", [])]
    return warnings, notes


def _absent(reason) -> bool:
    """A camera skipped because the observation has no data of it (nothing to act on)."""
    text = str(reason or "")
    return "no cleaned events" in text or "no event list" in text or "not found" in text


def _summary(paths: ObsPaths, name: str, filt: dict, reg: dict, fit: dict) -> str:
    """The answer first: target, cameras, kT with its interval and frame, abundance,
    fluxes and luminosities with band, frame and cosmology, statistic, flags."""
    cams = ", ".join(f"{c.upper()} {s['exposure_after_s']:.0f} s" for c, s in filt.items()
                     if isinstance(s, dict) and s.get("status") == "ok")
    centre = reg.get("center", {})
    rows = [("target", f"{name}, XMM-Newton {paths.obsid}; centre RA {centre.get('ra', 0):.5f}, "
                       f"Dec {centre.get('dec', 0):.5f}; source radius {reg.get('radius_arcmin', 0):.2f}'"),
            ("cameras", f"{cams or 'none'} (live time after flare screening)")]
    if fit:
        fb = fit.get("model_fallback")
        model = fit.get("model", "-") + (f" (instead of {fb['requested']}: AtomDB absent)" if fb else "")
        rows.append(("model", model))
        rows += _parameter_rows(fit)
        rows += _flux_rows(fit)
        st = fit.get("statistic", {})
        rows.append(("statistic", f"{st.get('name', '-')} {st.get('value', 0):.1f} for {st.get('dof', 0)} dof"))
        flags = fit.get("flags") or []
        rows.append(("flags", "; ".join(flags) if flags else "none (nothing doubtful found)"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td{' class=warn' if k == 'flags' and fit.get('flags') else ''}>"
                   f"{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<div class='summary'><h2>Summary</h2><table>{body}</table></div>"


def _interval(p: dict, fmt: str = ".3g") -> str:
    if p.get("lower") is None or p.get("upper") is None:
        return "interval open"
    return f"{format(p['lower'], fmt)}-{format(p['upper'], fmt)}"


def _parameter_rows(fit: dict) -> list:
    """kT (with its frame) and a free abundance."""
    rows, conf = [], fit.get("conf_level", 90)
    pars = fit.get("parameters", {})
    for key, p in pars.items():
        comp, par = key.split(".", 1)
        if par == "kT" and not p["frozen"]:
            z = next((q["value"] for k, q in pars.items() if k.startswith(comp + ".") and k.lower().endswith("redshift")),
                     None)
            frame = (f"source rest frame (z = {z:g})" if z is not None
                     else "observed frame (the model has no redshift)")
            rows.append((f"kT ({comp})", f"{p['value']:.2f} keV ({_interval(p, '.2f')}, {conf}%), {frame}"))
        elif par.lower().startswith("abundanc") and not p["frozen"]:
            rows.append((f"abundance ({comp})", f"{p['value']:.2f} solar ({_interval(p, '.2f')}, {conf}%), "
                                                f"table {fit.get('abund_table', '-')}"))
    return rows


def _flux_rows(fit: dict) -> list:
    """Fluxes (observed frame, absorbed and not) and luminosities, with band and cosmology."""
    rows = []
    for key, f in fit.get("fluxes", {}).items():
        band, kind = key.split("keV_")
        if kind == "luminosity":
            label = f"L {band} keV"
            how = f"z = {f.get('redshift', 0):g}, {f.get('cosmology', '')}"
        else:
            label = f"flux {band} keV, {kind}"
            how = "observed frame"
        rows.append((label, f"{f['value']:.3g} ({_interval(f)}) {f['unit']}, {how}"))
    return rows


PRODUCTS_SHOWN = ("events/filtering.json", "events/*_clean_evt.fits", "events/*_gti.fits", "regions/regions.json",
                  "regions/src.reg", "regions/bkg.reg", "regions/src_sky.reg", "regions/bkg_sky.reg",
                  "regions/ptsrc.reg", "regions/epic_images.fits", "regions/epic_expmaps.fits",
                  "spectra/spectra.json", "spectra/*_src_grp.pha", "spectra/*.rmf", "spectra/*.arf",
                  "fit/fit.json", "fit/fit.csv", "fit/fit.xcm", "fit/fit_pyxspec.py",
                  "profile/profile.json", "profile/annuli.reg", "profile/annuli_sky.reg", "logs/*.log")


def _files(paths: ObsPaths) -> str:
    """Links to the products (relative to the report, so they follow the folder)."""
    items = []
    for pattern in PRODUCTS_SHOWN:
        for f in sorted(paths.results.glob(pattern)):
            rel = f.relative_to(paths.results).as_posix()
            items.append(f"<li><a href='{html.escape(rel)}'>{html.escape(rel)}</a></li>")
    return f"<h2>Files</h2><ul class='files'>{''.join(items)}</ul>" if items else ""
