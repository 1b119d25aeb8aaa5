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
    warnings = []
    for cam, s in filt.items():
        if s.get("status") != "ok":
            warnings.append(f"filtering {cam}: {s.get('reason')}")
        if s.get("note"):
            warnings.append(f"filtering {cam}: {s['note']}")
    warnings += [f"regions: {w}" for w in reg.get("warnings", [])]
    for cam, s in spec.get("cameras", {}).items():
        if s.get("status") != "ok":
            warnings.append(f"spectra {cam}: {s.get('reason')}")
    warnings += [f"fit: {n}" for n in fit.get("notes", [])]
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
                  for c in filt for p in (sorted(paths.events.glob(f"{c}*_lc.png")) or [paths.events / f"{c}_lc.png"]))
    vers = "".join(f"<li>{html.escape(k)} {html.escape(v)}</li>" for k, v in _versions().items())
    cmds = "\n".join(html.escape(c) for c in commands)
    centre = reg.get("center", {})
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)} - XMM {paths.obsid}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #aaa;padding:3px 8px}}.warn{{color:#a40}}
figure{{display:inline-block;margin:0.5em;max-width:48%}}</style></head>
<body><h1>{html.escape(name)}: XMM-Newton observation {paths.obsid}</h1>
<h2>Warnings</h2><ul class="warn">{''.join(f'<li>{html.escape(w)}</li>' for w in warnings) or '<li>none</li>'}</ul>
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
<h2>Reproduce</h2><pre>{cmds}</pre><h2>Versions</h2><ul>{vers}</ul></body></html>
"""
    dest = paths.results / "report.html"
    write_text(dest, page)
    return dest
