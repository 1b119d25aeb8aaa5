"""The pieces of the modelled background (``--background model``,
:mod:`xmmext.fitting.modelled_background`): step 3's side files, the models evaluated in
channel space (particle continuum, instrumental lines, known pn out-of-time counts), the
sky (CXB + Galactic foreground) and its prior, each region's full model, and the file of
the fitted background of the source spectra.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

import xmmext.events.particles as particles
import xmmext.instrument as ins
from xmmext.core.errors import UsageError
from xmmext.fitting.sherpa_model import build_sherpa_model
from xmmext.spectra.model_inputs import read_oot

__all__ = ["REGIONS", "PARTICLE_UNIT", "SKY_UNIT", "SP_UNIT", "CXB_PRIOR_PH", "CXB_PRIOR_WIDTH",
           "SOURCE_BACKGROUND_FILE", "read_sidecar", "sidecar_inputs", "channel_models", "region_model",
           "sky_model", "cxb_prior", "particle_band_group", "load_unsubtracted", "line_profile", "fixed",
           "write_source_background", "read_source_background"]

CXB_INDEX = 1.46                                  # extragalactic background power law
LINES_KEV = {"mos": (1.487, 1.740), "pn": (1.487,)}   # instrumental Al K, Si K below 7 keV
REGIONS = ("src", "bkg", "corner")
# units of the background parameters, so that they are all of order 1 (the covariance is
# computed numerically over them and the source's parameters together)
PARTICLE_UNIT = 1e-4          # counts / s / arcmin^2 (x the template's shape)
SKY_UNIT = 1e-6               # XSPEC norm per arcmin^2
SP_UNIT = 1e-4                # photons / s / keV / arcmin^2 at 1 keV, RMF only


def read_sidecar(cam: str, path: Path) -> dict:
    """The camera's <cam>_bkgmodel.json beside its spectrum (exit 2 when missing)."""
    side = Path(path).parent / f"{cam}_bkgmodel.json"
    if not side.exists():
        raise UsageError(f"{cam}: --background model needs {side.name} from step 3 (native spectral_analysis.py)",
                         side)
    info = json.loads(side.read_text())
    for key in ("src", "bkg"):
        if key not in info.get("regions", {}):
            raise UsageError(f"{cam}: {side.name} has no {key} region", side)
    return info


def sidecar_inputs(cam: str, path: Path) -> list[Path]:
    """Every file the modelled background of one camera reads (for the step's fingerprint)."""
    side = Path(path).parent / f"{cam}_bkgmodel.json"
    info = read_sidecar(cam, path)
    folder = side.parent
    files = [side]
    for reg in info["regions"].values():
        files += [folder / reg[k] for k in ("pha", "sky_arf", "cluster_arf", "oot_file") if reg.get(k)]
    return list(dict.fromkeys(files))



@lru_cache(maxsize=1)
def channel_models():
    """sherpa models evaluated in channel space (the full channel array, as the response-
    folded models return it, so they can be added to them in a full model)."""
    from sherpa.models.model import ArithmeticModel
    from sherpa.models.parameter import Parameter

    class ParticleContinuum(ArithmeticModel):
        """level (counts / s / arcmin^2 in the template's units) x scale x fixed shape."""
        def __init__(self, name, shape, scale):
            self.shape, self.scale = shape, scale
            self.level = Parameter(name, "level", 1.0, 0.0, 1e6)
            ArithmeticModel.__init__(self, name, (self.level,))

        def calc(self, p, *args, **kw):
            return p[0] * self.scale * self.shape

    class ChannelLines(ArithmeticModel):
        """Gaussian lines at fixed energies with the instrument's resolution; each amplitude
        is counts / s / arcmin^2."""
        def __init__(self, name, profiles, scale):
            self.profiles, self.scale = profiles, scale
            pars = tuple(Parameter(name, f"line{k + 1}", 0.0, 0.0, 1e6) for k in range(len(profiles)))
            for par in pars:
                setattr(self, par.name, par)
            ArithmeticModel.__init__(self, name, pars)

        def calc(self, p, *args, **kw):
            return self.scale * sum(a * prof for a, prof in zip(p, self.profiles))

    class FixedCounts(ArithmeticModel):
        """Known counts per channel (pn out-of-time events), not fitted."""
        def __init__(self, name, counts):
            self.counts = counts
            self.scale = Parameter(name, "scale", 1.0, 0.0, 10.0, frozen=True)
            ArithmeticModel.__init__(self, name, (self.scale,))

        def calc(self, p, *args, **kw):
            return p[0] * self.counts
    return ParticleContinuum, ChannelLines, FixedCounts


def region_model(d, key: str, reg: dict, folder: Path, cam: str, cluster, sky, sp, shape, profiles, level, opts):
    """The full model of one region's spectrum (see the module docstring); returns it, the
    camera's particle level (created with the first region), the region's lines and the
    part of the model that is not the source (its background)."""
    from sherpa.astro.instrument import RMFModelPHA, RSPModelPHA
    from sherpa.astro.io import read_arf
    from sherpa.models.basic import Scale1D
    ParticleContinuum, ChannelLines, FixedCounts = channel_models()
    rmf, expo = d.get_rmf(), float(d.exposure)
    scale = reg["exposed_arcmin2"] * expo * PARTICLE_UNIT
    cont = ParticleContinuum(f"particle_{cam}_{key}", shape, scale)
    if level is None:
        level = cont.level
        level.val = start_level(d, shape, scale, opts)
    else:
        cont.level = level                      # one particle level per camera
    lines = ChannelLines(f"lines_{cam}_{key}", profiles, scale)
    for par in lines.pars:                      # off the bound at zero, where LM would not move it
        par.val = 0.03 * level.val
    total = cont + lines
    if reg.get("oot_file"):                     # pn out-of-time events: known, not fitted
        total = total + FixedCounts(f"out_of_time_{cam}_{key}", read_oot(folder / reg["oot_file"], key))
    # sherpa's RSP/RMF models give counts per second: each folded model carries the
    # exposure (and the region's area, share or soft-proton weight) as a fixed factor
    if key != "corner":
        a_sky = fixed(Scale1D, f"area_{cam}_{key}", reg["area_arcmin2"] * expo * SKY_UNIT)
        total = total + RSPModelPHA(read_arf(str(folder / reg["sky_arf"])), rmf, d, a_sky * sky)
        a_sp = fixed(Scale1D, f"sp_area_{cam}_{key}", reg["exposed_arcmin2"] * reg["sp_weight"] * expo * SP_UNIT)
        total = total + RMFModelPHA(rmf, d, a_sp * sp)
    background = total
    if key == "src":
        total = RSPModelPHA(d.get_arf(), rmf, d, fixed(Scale1D, f"exposure_{cam}", expo) * cluster) + total
    elif key == "bkg" and reg.get("cluster_arf"):
        share = fixed(Scale1D, f"cluster_share_{cam}", reg["cluster_ratio"] * expo)
        total = RSPModelPHA(read_arf(str(folder / reg["cluster_arf"])), rmf, d, share * cluster) + total
    return total, level, lines, background


def fixed(cls, name: str, value: float):
    """A frozen constant factor."""
    c = cls(name)
    c.c0, c.c0.frozen = value, True
    return c


def load_unsubtracted(ui, data_id, pha: Path, rmf: Path, arf: Path | None):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ui.load_pha(data_id, str(pha), use_errors=False)
    d = ui.get_data(data_id)
    for bid in list(d.background_ids):       # nothing is subtracted: the background is modelled
        d.delete_background(bid)
    ui.load_rmf(data_id, str(rmf))
    if arf is not None:
        ui.load_arf(data_id, str(arf))
    if d.quality is not None and np.any(d.quality != 0):
        ui.ignore_bad(data_id)
    return d


def line_profile(cam: ins.Camera, e_ch: np.ndarray, energy: float) -> np.ndarray:
    """A line at ``energy`` (keV) as the detector records it, per channel (sums to 1)."""
    sigma = float(cam.sigma_kev(energy))
    prof = np.exp(-0.5 * ((e_ch - energy) / sigma) ** 2)
    return prof / prof.sum()


def start_level(d, shape, scale, opts) -> float:
    """Particle level that gives the spectrum's counts above 5 keV (where particles dominate)."""
    e = np.asarray(d.channel, float) * ins.CHANNEL_EV / 1000.0
    sel = (e > max(5.0, opts.emin)) & (e < opts.emax)
    model = float(np.sum(shape[: len(e)][sel]) * scale)
    return float(np.clip(np.sum(d.counts[sel]) / model, 1e-3, 1e5)) if model > 0 else 1.0


def sky_model(opts, comps, expr):
    """CXB (absorbed power law, index 1.46) + Galactic foreground (unabsorbed thermal:
    apec 0.2 keV with AtomDB, else bremss), norms per arcmin^2; the absorber takes the
    source model's nH."""
    from xmmext.xspec.atomdb import find_apec_files
    from xmmext.xspec.expression import parse_model
    thermal = "apec" if find_apec_files() else "bremss"
    sky_expr = parse_model(f"tbabs*powerlaw+{thermal}")
    sky, objs = build_sherpa_model(sky_expr, prefix="sky_")
    named = {c.name: objs[c.name] for c in sky_expr.components}
    absorber = next(o for name, o in named.items() if name.lower().startswith("tbabs"))
    src_abs = next((comps[c.name] for c in expr.components if c.xspec_name.lower() in ("tbabs", "phabs", "wabs")),
                   None)
    absorber.nH = src_abs.nH if src_abs is not None else (opts.nh or 0.0)
    pl = next(o for name, o in named.items() if name.lower().startswith("powerlaw"))
    pl.PhoIndex, pl.PhoIndex.frozen = CXB_INDEX, True
    pl.norm = 1.0
    fg = next(o for name, o in named.items() if name.lower().startswith(thermal))
    fg.kT, fg.kT.min, fg.kT.max = 0.2, 0.08, 0.6
    fg.norm = 10.0 if thermal == "bremss" else 4.0
    if thermal == "apec":
        fg.Abundanc.frozen = True
        fg.Redshift.frozen = True
    return sky, {f"sky_{name}": o for name, o in named.items()}


def particle_band_group(grouping: np.ndarray, quality: np.ndarray, cam: str) -> tuple[np.ndarray, np.ndarray]:
    """The grouping with the particle band (10-12 keV) as one group of good channels."""
    g, q = np.array(grouping), np.array(quality)
    lo, hi = (int(round(e * 1000 / ins.CHANNEL_EV)) for e in particles.PARTICLE_BAND[cam])
    hi = min(hi, len(g))
    g[lo], g[lo + 1:hi], q[lo:hi] = 1, -1, 0
    if hi < len(g):
        g[hi] = 1
    return g, q


CXB_PRIOR_PH = 11.6           # photons / cm^2 / s / sr / keV at 1 keV (De Luca & Molendi 2004)
CXB_PRIOR_WIDTH = 0.2         # its spread from field to field (cosmic variance, source excision)


def cxb_prior(ui, data_id: int, sky_comps: dict) -> int:
    """A pseudo-observation of the CXB norm: one bin of N0 = 1 / width^2 counts against the
    model N0 x norm / norm0 (a Poisson, close to Gaussian, prior of the given width), so
    that without corner events the particles and soft protons cannot trade places with the
    sky. Returns its data id."""
    from sherpa.data import Data1D
    from sherpa.models.basic import Scale1D
    pl = next(o for name, o in sky_comps.items() if "powerlaw" in name.lower())
    n0 = 1.0 / CXB_PRIOR_WIDTH ** 2
    norm0 = CXB_PRIOR_PH / 1.1818e7 / SKY_UNIT              # per arcmin^2, in the sky norms' unit
    ui.set_data(data_id, Data1D("cxb_prior", np.array([1.0]), np.array([n0])))
    prior = Scale1D("cxb_prior")
    prior.c0 = pl.norm * (n0 / norm0)
    ui.set_source(data_id, prior)
    return data_id


SOURCE_BACKGROUND_FILE = "source_background.fits"


def write_source_background(path: Path, counts: dict) -> Path:
    """The fitted background of each camera's source spectrum (expected counts per channel:
    particles, lines, pn OOT, sky, soft protons - all but the source) as one FITS table per
    camera, for fits that take the background as known (the profile's cross-talk fit)."""
    from astropy.io import fits
    from xmmext.core.fileio import write_fits
    hdus = [fits.PrimaryHDU()]
    for cam, c in counts.items():
        hdu = fits.BinTableHDU.from_columns([fits.Column("CHANNEL", "J", array=np.arange(len(c))),
                                             fits.Column("COUNTS", "D", unit="count", array=c)], name=cam.upper())
        hdu.header["COMMENT"] = "modelled background of the source spectrum (--background model), expected counts"
        hdus.append(hdu)
    write_fits(path, fits.HDUList(hdus))
    return path


def read_source_background(path: Path, cam: str) -> np.ndarray:
    """One camera's table of :func:`write_source_background`."""
    from astropy.io import fits
    with fits.open(path) as h:
        return np.asarray(h[cam.upper()].data["COUNTS"], float)
