"""Helpers of the SAS tests: stand-in executables written into a folder on PATH."""
from __future__ import annotations

import stat
import sys
import textwrap
from pathlib import Path


def fake_task(bindir: Path, name: str, body: str, prefix: str = ""):
    """A stand-in SAS task written in Python."""
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text(f"#!{sys.executable}\nimport os, sys, time, json, shutil\n" + prefix + textwrap.dedent(body))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
