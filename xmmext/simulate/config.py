"""What a simulated observation depends on: :class:`SimConfig` (every field recorded in
truth.json), the named presets, the checks made before any file is written, and the
command line that fills them (``python -m xmmext.simulate.observation``)."""
from __future__ import annotations

from dataclasses import dataclass, field

import xmmext.instrument as ins
from xmmext.core.cli import base_parser
from xmmext.core.errors import UsageError
from xmmext.core.paths import ObsPaths, parse_cameras

__all__ = ["SimConfig", "PRESETS", "THERMAL_MODELS", "validate", "preset_config", "build_parser", "config_from_args"]
THERMAL_MODELS = ("auto", "apec", "zbremss", "bremss")


@dataclass
class SimConfig:
    """Everything the simulation depends on (all recorded in truth.json)."""
    obsid: str = "0999990101"
    seed: int = 42
    exposure: float = 30000.0
    cameras: list = field(default_factory=lambda: ["mos1", "mos2", "pn"])
    ra_pnt: float = 150.50
    dec_pnt: float = 2.20
    pa_pnt: float = 60.0
    date_obs: str = "2019-05-01T12:00:00"
    filter: str = "Medium"
    # cluster
    kt: float = 5.0
    abund: float = 0.3
    redshift: float = 0.05
    nh: float = 0.03
    norm: float | None = None          # None: set from cluster_rate
    cluster_rate: float = 5.0          # pn counts/s on-axis (before vignetting, chips)
    offset_arcmin: float = 0.5         # cluster centre from the pointing
    offset_pa_deg: float = 30.0
    core_radius_arcmin: float = 1.5
    beta: float = 0.67
    r_max_arcmin: float = 20.0
    thermal_model: str = "auto"        # auto (apec with AtomDB, else zbremss) | apec | zbremss | bremss
    abund_table: str = "aspl"
    # others
    flare_fraction: float = 0.2
    n_flares: int = 4
    flare_scale: float = 1.0           # multiplies the flare peak rates
    n_point_sources: int = 15
    ps_min_counts: float = 60.0        # pn counts of the faintest point source
    ps_max_counts: float = 3000.0
    sas_cleaned: bool = False          # write SAS-cleaned lists (<cam>_exp1_clean_evts.fits) instead
    kt_centre: float | None = None     # cool core: kT at the centre (None = isothermal at kt)
    cool_radius_arcmin: float = 1.5    # kT reaches (kt_centre + kt) / 2 here
    pn_oot: bool = True                # pn out-of-time events
    cluster_ra: float | None = None    # cluster centre on the sky (default: offset from the pointing)
    cluster_dec: float | None = None
    sky_seed: int | None = None        # point sources fixed on the sky about the cluster (shared by pointings)
    arc_fraction: float = 0.0          # an arc of extra emission (share of the cluster's norm)
    arc_radius_arcmin: float = 1.0
    arc_width_arcsec: float = 12.0
    arc_length_deg: float = 120.0
    arc_pa_deg: float = 45.0
    sp_scale: float = 1.0              # residual (quiescent) soft protons: x the default 0.3 pn counts/s
    sp_index: float = 0.8              # their counts-space spectrum E^-index (lower: harder)


# Named clusters for --preset (fields of SimConfig; explicit options override them)
PRESETS = {
    "demo": {},
    "faint-distant": {"kt": 4.0, "redshift": 0.45, "cluster_rate": 0.5, "core_radius_arcmin": 0.35,
                      "r_max_arcmin": 6.0, "n_point_sources": 25},
    "fills-field": {"kt": 6.0, "redshift": 0.02, "cluster_rate": 30.0, "core_radius_arcmin": 6.0,
                    "r_max_arcmin": 40.0, "beta": 0.6},
    "cool-core": {"kt": 6.0, "kt_centre": 3.0, "cool_radius_arcmin": 1.5, "cluster_rate": 10.0,
                  "core_radius_arcmin": 1.0},
}


def validate(cfg: SimConfig) -> None:
    """Refuse impossible settings before any file is touched (exit 2)."""
    ObsPaths.of(cfg.obsid, ".")          # validates the OBSID
    checks = [
        (cfg.exposure > 0, "exposure must be positive"),
        (cfg.exposure <= 2.0e6, "exposure above 2 Ms is not an XMM observation"),
        (cfg.exposure >= 100.0, "exposure below 100 s leaves nothing to analyse"),
        (cfg.kt <= 100.0, "kT above 100 keV is outside the thermal models' range"),
        (cfg.nh <= 100.0, "nH above 1e24 cm^-2 (100 x 1e22) absorbs everything XMM sees"),
        (cfg.cluster_rate <= 1000.0, "cluster rate above 1000 pn counts/s is beyond pile-up and telemetry"),
        (cfg.n_point_sources <= 1000, "more than 1000 point sources"),
        (cfg.n_flares <= 100, "more than 100 flares"),
        (cfg.flare_scale <= 1000.0, "flare scale above 1000"),
        (0.0 <= cfg.flare_fraction <= 1.0, "flare fraction must be in [0, 1]"),
        (cfg.flare_scale > 0, "flare scale must be positive"),
        (cfg.kt > 0, "kT must be positive"),
        (cfg.abund >= 0, "abundance must be >= 0"),
        (cfg.nh >= 0, "nH must be >= 0"),
        (cfg.redshift >= 0, "redshift must be >= 0"),
        (cfg.norm is None or cfg.norm > 0, "norm must be positive"),
        (cfg.cluster_rate > 0, "cluster rate must be positive"),
        (cfg.beta > 0.5, "beta must be > 0.5 for a finite flux"),
        (cfg.core_radius_arcmin > 0, "core radius must be positive"),
        (cfg.n_point_sources >= 0, "number of point sources must be >= 0"),
        (cfg.n_flares >= 1, "number of flares must be >= 1"),
        (0 <= cfg.offset_arcmin < ins.FOV_RADIUS_ARCMIN, "cluster offset must be inside the FOV"),
        (cfg.thermal_model in THERMAL_MODELS, f"thermal model must be one of {', '.join(THERMAL_MODELS)}"),
        (-90 <= cfg.dec_pnt <= 90, "pointing Dec out of range"),
        (cfg.kt_centre is None or cfg.kt_centre > 0, "central kT must be positive"),
        (cfg.cool_radius_arcmin > 0, "cool-core radius must be positive"),
        (0 < cfg.r_max_arcmin <= 40, "cluster extent must be in (0, 40] arcmin"),
        (cfg.seed >= 0, "seed must be >= 0"),
        ((cfg.cluster_ra is None) == (cfg.cluster_dec is None), "give both cluster RA and Dec, or neither"),
        (0 <= cfg.arc_fraction <= 1, "arc fraction must be in [0, 1]"),
        (cfg.arc_radius_arcmin > 0 and cfg.arc_width_arcsec > 0 and 0 < cfg.arc_length_deg <= 360,
         "arc radius, width and length must be positive (length <= 360 degrees)"),
        (cfg.sky_seed is None or cfg.sky_seed >= 0, "sky seed must be >= 0"),
        (0 <= cfg.sp_scale <= 1000, "soft-proton scale must be in [0, 1000]"),
        (0 <= cfg.sp_index < 0.99 or 1.01 < cfg.sp_index <= 4, "soft-proton index must be in [0, 4], not 1"),
    ]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)
    if not cfg.cameras:
        raise UsageError("no camera to simulate")
    if cfg.filter.lower() not in ("thin", "medium", "thick"):
        raise UsageError(f"unknown filter {cfg.filter!r}")
    from astropy.time import Time
    try:
        year = Time(cfg.date_obs, scale="utc").datetime.year
    except (ValueError, TypeError):
        raise UsageError(f"--date-obs must be an ISO date (e.g. 2019-05-01T12:00:00), got {cfg.date_obs!r}") from None
    if not 1999 <= year <= 2100:
        raise UsageError(f"--date-obs {cfg.date_obs} is not within XMM-Newton's life (from 1999)")


def preset_config(name: str, **overrides) -> SimConfig:
    """A SimConfig from a named preset, with fields overridden (for scripts and tests)."""
    return SimConfig(**{**PRESETS[name], **overrides})


# --- command line ---------------------------------------------------------------------
# option -> SimConfig field (options left out take the preset's value, else SimConfig's)
_OPTION_FIELDS = {"obsid": "obsid", "seed": "seed", "exposure": "exposure", "kt": "kt", "abund": "abund",
                  "redshift": "redshift", "nh": "nh", "norm": "norm", "cluster_rate": "cluster_rate",
                  "offset_arcmin": "offset_arcmin", "core_radius": "core_radius_arcmin", "beta": "beta",
                  "r_max": "r_max_arcmin", "kt_centre": "kt_centre", "cool_radius": "cool_radius_arcmin",
                  "flare_fraction": "flare_fraction", "n_flares": "n_flares", "flare_scale": "flare_scale",
                  "n_point_sources": "n_point_sources", "thermal_model": "thermal_model", "filter": "filter",
                  "date_obs": "date_obs", "cluster_ra": "cluster_ra", "cluster_dec": "cluster_dec",
                  "sky_seed": "sky_seed", "arc_fraction": "arc_fraction", "arc_radius": "arc_radius_arcmin",
                  "arc_width": "arc_width_arcsec", "arc_length": "arc_length_deg", "arc_pa": "arc_pa_deg",
                  "sp_scale": "sp_scale", "sp_index": "sp_index"}


def build_parser():
    from argparse import SUPPRESS
    from xmmext.core.values import finite_float
    p = base_parser("python -m xmmext.simulate.observation", "Simulate an XMM-Newton EPIC observation "
                    "of a galaxy cluster (event lists + truth.json).")
    d = SimConfig()
    p.argument_default = SUPPRESS      # options not given are absent: the preset fills them
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS),
                   help="a named cluster; options given explicitly override it (default %(default)s)")
    p.add_argument("--obsid", help=f"10-digit OBSID (default {d.obsid})")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--exposure", type=finite_float, help=f"seconds (default {d.exposure:g})")
    p.add_argument("--cameras", default="mos1,mos2,pn")
    p.add_argument("--kt", type=finite_float, help=f"cluster temperature (outer, with a cool core), keV (default {d.kt:g})")
    p.add_argument("--kt-centre", type=finite_float, help="cool core: central kT, keV (default: isothermal)")
    p.add_argument("--cool-radius", type=finite_float,
                   help=f"cool core: radius where kT is half-way, arcmin (default {d.cool_radius_arcmin:g})")
    p.add_argument("--abund", type=finite_float, help=f"abundance (apec only; default {d.abund:g})")
    p.add_argument("--redshift", type=finite_float, help=f"default {d.redshift:g}")
    p.add_argument("--nh", type=finite_float, help=f"absorbing column, 1e22 cm^-2 (default {d.nh:g})")
    p.add_argument("--norm", type=finite_float, help="XSPEC norm of the thermal model "
                   "(default: set by --cluster-rate)")
    p.add_argument("--cluster-rate", type=finite_float,
                   help=f"pn on-axis cluster count rate used to set the norm (default {d.cluster_rate:g})")
    p.add_argument("--offset-arcmin", type=finite_float,
                   help="cluster centre distance from the pointing (arcmin)")
    p.add_argument("--core-radius", type=finite_float, help=f"arcmin (default {d.core_radius_arcmin:g})")
    p.add_argument("--beta", type=finite_float, help=f"default {d.beta:g}")
    p.add_argument("--r-max", type=finite_float, help=f"cluster extent, arcmin (default {d.r_max_arcmin:g})")
    p.add_argument("--flare-fraction", type=finite_float)
    p.add_argument("--n-flares", type=int)
    p.add_argument("--flare-scale", type=finite_float, help="multiplies flare peak rates")
    p.add_argument("--n-point-sources", type=int)
    p.add_argument("--thermal-model", choices=list(THERMAL_MODELS))
    p.add_argument("--filter", choices=["Thin", "Medium", "Thick"])
    p.add_argument("--date-obs")
    p.add_argument("--cluster-ra", type=finite_float, help="cluster centre RA, deg (default: --offset-arcmin "
                   "from the pointing); with --sky-seed, pointings of one cluster")
    p.add_argument("--cluster-dec", type=finite_float, help="cluster centre Dec, deg")
    p.add_argument("--sky-seed", type=int, help="point sources fixed on the sky about the cluster, drawn from "
                   "this seed (the same sources in every pointing with the same sky seed)")
    p.add_argument("--arc-fraction", type=finite_float, help="an arc of extra emission in the core (a sloshing "
                   "cold front), as a share of the cluster's norm (default 0: none)")
    p.add_argument("--arc-radius", type=finite_float, help=f"arc radius, arcmin (default {d.arc_radius_arcmin:g})")
    p.add_argument("--arc-width", type=finite_float, help=f"arc width (Gaussian sigma), arcsec (default {d.arc_width_arcsec:g})")
    p.add_argument("--arc-length", type=finite_float, help=f"arc length, degrees (default {d.arc_length_deg:g})")
    p.add_argument("--arc-pa", type=finite_float, help=f"arc position angle, degrees east of north (default {d.arc_pa_deg:g})")
    p.add_argument("--sp-scale", type=finite_float, help="residual soft protons (not removed by the light curve): "
                   "x the default level (0.3 pn counts/s)")
    p.add_argument("--sp-index", type=finite_float, help=f"their counts-space spectrum E^-index (default {d.sp_index:g})")
    p.add_argument("--no-oot", action="store_true", default=False, help="no pn out-of-time events")
    p.add_argument("--sas-cleaned", action="store_true", default=False,
                   help="write SAS-cleaned lists (<cam>_exp1_clean_evts.fits: screened, FLAG==0, flares cut "
                        "and kept as GTI00n06 tables) as SAS users have them")
    return p


def config_from_args(args) -> SimConfig:
    """SimConfig defaults, then the preset, then the options given."""
    values = dict(PRESETS[args.preset])
    values.update({field_name: getattr(args, opt) for opt, field_name in _OPTION_FIELDS.items() if hasattr(args, opt)})
    return SimConfig(cameras=parse_cameras(args.cameras), sas_cleaned=args.sas_cleaned,
                     pn_oot=not args.no_oot, **values)
