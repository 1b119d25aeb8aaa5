"""The numbers a change must not move: run the demo and (when ../shared is there) A907
through every step in a fresh work directory and write what they give, or compare two such
files.

    python tools/output_parity.py run OUT.json [--workdir DIR]
    python tools/output_parity.py compare BEFORE.json AFTER.json [--rtol 1e-9]

Recorded per observation: every fit parameter (value, interval), the statistic, the region
(centre, radius, excluded sources), each camera's spectrum (counts, net counts, EXPOSURE,
BACKSCAL) and step 1's live times. Used for issue 25 (the package moved, nothing changed).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
A907 = ROOT.parent / "shared" / "data" / "xmm_a907_0201903501"


def _run(args: list[str], workdir: Path) -> None:
    subprocess.run(["bash", str(ROOT / "run_extended_source_analysis.sh"), *args, "--workdir", str(workdir)],
                   check=True, capture_output=True, text=True)


def numbers(workdir: Path, obsid: str) -> dict:
    res = workdir / "results" / obsid
    fit = json.loads((res / "fit" / "fit.json").read_text())
    reg = json.loads((res / "regions" / "regions.json").read_text())
    spec = json.loads((res / "spectra" / "spectra.json").read_text())["cameras"]
    filt = json.loads((res / "events" / "filtering.json").read_text())
    return {
        "fit": {k: [v["value"], v["lower"], v["upper"]] for k, v in fit["parameters"].items()},
        "statistic": [fit["statistic"]["value"], fit["statistic"]["dof"]],
        "region": [reg["center"]["x"], reg["center"]["y"], reg["radius_arcmin"], len(reg["excluded"])],
        "spectra": {c: [s["counts"], s["net_counts"], s["exposure_s"], s["backscal_src"]]
                    for c, s in spec.items() if s.get("status") == "ok"},
        "live_time": {c: s["exposure_after_s"] for c, s in filt.items() if s.get("status") == "ok"},
    }


def run(out: Path, workdir: Path | None) -> None:
    wd = Path(workdir or tempfile.mkdtemp(prefix="parity_"))
    _run(["--demo"], wd)
    result = {"demo": numbers(wd, "0999990101")}
    if A907.is_dir():
        ev = wd / "data" / "0201903501" / "event"
        ev.mkdir(parents=True, exist_ok=True)
        for f in sorted((A907 / "event").glob("*.fits")):
            if not (ev / f.name).exists():
                (ev / f.name).symlink_to(f)
        _run(["0201903501", "A907", "--nh", "0.054", "--redshift", "0.1527"], wd)
        result["a907"] = numbers(wd, "0201903501")
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"{out}: {', '.join(result)}")


def _differences(a, b, rtol: float, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in set(a) ^ set(b)]
        for k in sorted(set(a) & set(b)):
            out += _differences(a[k], b[k], rtol, f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for k, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, rtol, f"{path}[{k}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        same = math.isclose(a, b, rel_tol=rtol, abs_tol=1e-300) or (math.isnan(a) and math.isnan(b))
        return [] if same else [f"{path}: {a!r} -> {b!r}"]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def compare(before: Path, after: Path, rtol: float) -> int:
    diffs = _differences(json.loads(before.read_text()), json.loads(after.read_text()), rtol)
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s) beyond rtol {rtol:g}")
    return 1 if diffs else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--workdir", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--rtol", type=float, default=1e-9)
    args = p.parse_args(argv)
    if args.verb == "run":
        run(args.out, args.workdir)
        return 0
    return compare(args.before, args.after, args.rtol)


if __name__ == "__main__":
    sys.exit(main())
