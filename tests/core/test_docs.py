"""The README is a front door: short, its two quick-start commands, links that lead
somewhere, and only commands that exist."""
from __future__ import annotations

import re

from conftest import ROOT
from xmmext.command import COMMANDS

README = (ROOT / "README.md").read_text()


def test_readme_is_short_and_starts_with_two_commands():
    assert README.count("\n") <= 200
    quick = README.split("## Quick start")[1].split("```bash")[1].split("```")[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["bash run_extended_source_analysis.sh --demo", "bash run_tests.sh"]


def test_every_link_leads_to_a_file():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links
    for link in links:
        assert (ROOT / link).is_file(), link
    for doc in ("validation", "background", "profiles", "sas", "design"):
        assert (ROOT / "docs" / f"{doc}.md").is_file()
    assert (ROOT / "CHANGELOG.md").is_file()


def test_every_xmmext_command_named_exists():
    named = set(re.findall(r"`xmmext (\w+)", README))
    assert named and named <= set(COMMANDS), named - set(COMMANDS)
    scripts = set(re.findall(r"(?:bash|python) (\w+\.(?:sh|py))", README))
    assert all((ROOT / s).is_file() for s in scripts), scripts
