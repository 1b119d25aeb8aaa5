"""The shape every step has: typed Options -> plan -> run -> record.

* ``option(...)`` declares a field of a step's Options dataclass with its help text and
  how the command line spells and parses it; :func:`add_options` builds the argparse
  options from the dataclass, so the step's own script and the full pipeline
  (``run_extended_source_analysis.sh``) offer the same options with the same defaults.
* :class:`Step` is what every step implements: ``plan`` (backend chosen once, the
  inputs and outputs, the fingerprint) and ``run`` (the work; returns the summary that
  becomes ``<step>.json`` and the files written).
* :func:`execute` holds the one up-to-date rule: a step is up to date when its record
  (``<step>.json``) exists, was completed, its fingerprint (options that matter, the
  backend, and the content of every input file) matches, and every output it lists
  exists. The old record is removed before a step runs and the new one is written last,
  after all outputs, so a run killed half-way is never taken as up to date.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from xmmext.core.errors import DataError, UsageError
from xmmext.core.fileio import read_record, remove_stale_parts, write_json

__all__ = ["RECORD_KEY", "RECORD_VERSION", "HASH_LIMIT_BYTES", "option", "option_fields", "default_of", "flag_of", "refuse_inputs_inside",
           "add_options", "options_from_namespace", "option_argv", "fingerprint_options", "file_signature",
           "fingerprint", "Plan", "StepResult", "StepRecord", "Step", "is_up_to_date", "finish_plan", "execute",
           "require", "no_usable"]

log = logging.getLogger("xmmext.steps")
RECORD_KEY = "step"                     # key of the record inside <step>.json
RECORD_VERSION = 1
HASH_LIMIT_BYTES = 512 * 1024 ** 2      # bigger input files are fingerprinted by size + mtime


# --- Options ---------------------------------------------------------------------------------
def option(default: Any = MISSING, help: str = "", *, factory: Callable | None = None, flag: str | None = None,
           parse: Callable[[str], Any] | None = None, choices: list | None = None, multiple: bool = False,
           collect: Callable[[list], Any] | None = None, switch: bool = False, metavar: str | None = None,
           fingerprint: bool = True, pipeline: bool = True):
    """A field of a step's Options.

    ``parse`` converts one command-line value (errors become exit 2); ``multiple`` makes
    the option repeatable and ``collect`` turns the list of parsed values into the field's
    value; ``switch`` is an on/off flag. ``fingerprint=False`` for options that do not
    change the results (e.g. a timeout); ``pipeline=False`` for options the full pipeline
    does not forward (another step owns a flag of the same name, or the pipeline sets it).
    """
    meta = {"help": help, "flag": flag, "parse": parse, "choices": choices, "multiple": multiple,
            "collect": collect, "switch": switch, "metavar": metavar, "fingerprint": fingerprint,
            "pipeline": pipeline}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def option_fields(options_cls) -> list:
    """The fields of an Options class that are command-line options."""
    return [f for f in fields(options_cls) if "help" in f.metadata]


def default_of(f) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def flag_of(f) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, options_cls, pipeline_only: bool = False,
                skip: set[str] = frozenset()) -> list[str]:
    """Add the options of ``options_cls`` to ``parser``; return the field names added.

    Options not given on the command line are absent from the namespace
    (``argparse.SUPPRESS``), so the dataclass keeps the only copy of every default."""
    added = []
    for f in option_fields(options_cls):
        m = f.metadata
        if f.name in skip or (pipeline_only and not m["pipeline"]):
            continue
        default = default_of(f)
        shown = ",".join(default) if isinstance(default, (list, tuple)) and default else default
        text = m["help"] + ("" if m["switch"] or shown in (None, [], ()) else f" (default: {shown})")
        # argparse %-formats help texts: a literal % (e.g. "errors (%)") must be doubled
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
        if m["switch"]:
            kw["action"] = "store_true"
        else:
            kw["type"] = m["parse"] or str
            if m["multiple"]:
                kw["action"] = "append"
            if m["choices"]:
                kw["choices"] = m["choices"]
            if m["metavar"]:
                kw["metavar"] = m["metavar"]
        parser.add_argument(flag_of(f), **kw)
        added.append(f.name)
    return added


def options_from_namespace(options_cls, ns: argparse.Namespace, pipeline_only: bool = False, **overrides):
    """Build and validate an Options object from the options given on the command line
    (``pipeline_only``: only those the full pipeline forwards)."""
    values = {}
    for f in option_fields(options_cls):
        if pipeline_only and not f.metadata["pipeline"]:
            continue
        if hasattr(ns, f.name):
            v = getattr(ns, f.name)
            if f.metadata["multiple"] and f.metadata["collect"]:
                v = f.metadata["collect"](v)
            values[f.name] = v
    values.update(overrides)
    opts = options_cls(**values)
    opts.validate()
    return opts


def option_argv(opts) -> list[str]:
    """The command-line options that give ``opts`` (those that differ from the defaults)."""
    argv: list[str] = []
    for f in option_fields(type(opts)):
        v, m = getattr(opts, f.name), f.metadata
        if v == default_of(f) or v is None or (isinstance(v, tuple) and list(v) == list(default_of(f))):
            continue
        flag = flag_of(f)
        if m["switch"]:
            argv.append(flag)
        elif isinstance(v, dict):
            for k, x in v.items():
                argv += [flag, f"{k}={x}"]
        elif isinstance(v, list):
            for x in v:
                argv += [flag, str(x)]
        elif isinstance(v, tuple):
            argv += [flag, ",".join(v)]
        else:
            argv += [flag, str(v)]
    return argv


def fingerprint_options(opts) -> dict:
    """The options that change a step's results, as JSON-able values; numbers as floats,
    so that 60 from Python and 60.0 from the command line are the same option."""
    out = {}
    for f in fields(opts):
        if f.metadata.get("fingerprint", True):
            out[f.name] = _plain(getattr(opts, f.name))
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def _plain(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


# --- fingerprints ------------------------------------------------------------------------------
def file_signature(path: Path, by_content: bool = True) -> str:
    """Content hash of a file (size + mtime for very large files, or when not
    ``by_content``); 'absent' if missing."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return "absent"
    if st.st_size > HASH_LIMIT_BYTES or not by_content:
        return f"size={st.st_size},mtime_ns={st.st_mtime_ns}"
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256=" + h.hexdigest()


def fingerprint(step: str, options: dict, backend: str, inputs: list[Path], base: Path,
                stat_inputs: list[Path] = (), decided: dict | None = None) -> tuple[str, dict]:
    """(digest, description) of what a step's result depends on; ``stat_inputs`` are
    fingerprinted by size and mtime only (raw files written once, e.g. an ODF); ``decided``:
    what the plan settled beyond the options (e.g. the model when none was given, which
    depends on whether AtomDB is installed)."""
    from xmmext.core.version import __version__
    # the package version is part of it: results of an older release (other responses,
    # other instrument model) are never taken as up to date
    described = {"step": step, "version": RECORD_VERSION, "xmmext": __version__, "backend": backend,
                 "options": options, "decided": decided or {},
                 "inputs": {_rel(p, base): file_signature(p) for p in inputs}}
    described["inputs"].update({_rel(p, base): file_signature(p, by_content=False) for p in stat_inputs})
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), described


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(base).resolve())


# --- the step interface -------------------------------------------------------------------------
@dataclass
class Plan:
    """What a step will do: resolved backend, the files it reads and its record."""
    step: "Step"
    options: Any
    backend: str
    inputs: list[Path]
    record: Path                    # <step>.json
    folders: list[Path]             # folders it writes (their stale temporaries are removed)
    context: Any = None             # ObsPaths, or what the step needs to run
    stat_inputs: list = field(default_factory=list)   # inputs fingerprinted by size + mtime (the ODF)
    decided: dict = field(default_factory=dict)       # what the plan settled that changes results (the model)
    fingerprint: str = ""
    described: dict = field(default_factory=dict)


@dataclass
class StepResult:
    """What ``run`` returns: the summary (content of <step>.json) and the files written."""
    summary: dict
    outputs: list[Path]
    failure: Exception | None = None    # set when the step ran but gives no usable result


@dataclass
class StepRecord:
    """What :func:`execute` returns."""
    name: str
    summary: dict
    skipped: bool
    message: str

    def outcome(self) -> str:
        """One line: done or up to date, and what the result is."""
        return ("skipped (up to date)" if self.skipped else "done") + f": {self.message}"


class Step:
    """Base of every step. Subclasses set ``name`` and ``Options`` and implement
    ``plan``, ``run`` and ``describe``; what a run of many steps needs to know about a
    step (whether it runs unasked, how it takes its options from the run, the command
    that redoes it) the step declares here, so the sequence names no step."""
    name = "step"
    Options: type = object
    needs_obsid = True          # False for a step that works on files anywhere (the fit)
    has_backend = True          # False for a step with no SAS variant
    optional = False            # True: part of a run only when the run asks for it by name
    title = ""                  # what it makes, in a few words (the run's --<name> help for optional steps)
    script: str | None = None   # its own command ("{obsid}" filled in); None: no command of its own

    def options_from_run(self, options, paths, settings):
        """The options of this step in a run of one observation (``settings``: the run's
        RunSettings); default: as given."""
        return options

    def command_line(self, plan: "Plan") -> str | None:
        """The shell line that redoes this step on its own with the plan's options."""
        if self.script is None:
            return None
        import shlex
        import sys
        paths = plan.context if self.needs_obsid else None
        head = shlex.split(self.script.format(obsid=getattr(paths, "obsid", "")))
        # runnable as printed, from any folder: this interpreter, the scripts by full path
        root = Path(__file__).resolve().parents[2]
        head = [sys.executable if w == "python" else str(root / w) if (root / w).is_file() else w for w in head]
        if paths is not None:
            head += ["--workdir", str(paths.workdir)]
        if self.has_backend:
            head += ["--backend", plan.backend]
        return shlex.join(head + option_argv(plan.options))

    def check_early(self, options) -> list[str]:
        """Checks that can be made before any step of a run starts (e.g. that the fit's
        model can be evaluated): raise to stop the run at once; return lines to tell the
        user. Default: nothing to check."""
        return []

    def plan(self, context, options, backend: str = "auto") -> Plan:       # pragma: no cover - interface
        raise NotImplementedError

    def run(self, plan: Plan) -> StepResult:                                # pragma: no cover - interface
        raise NotImplementedError

    def describe(self, summary: dict) -> str:
        """One line for the console saying what the result is."""
        return ""

    def attach_record(self, summary: dict, record: dict) -> dict:
        """Put the record into the summary (default: under the key ``step``)."""
        return {**summary, RECORD_KEY: record}

    def record_in(self, summary: dict) -> dict | None:
        """The record a summary holds (None when there is none)."""
        rec = summary.get(RECORD_KEY)
        return rec if isinstance(rec, dict) else None

    def console(self, summary: dict) -> str:
        """What the step's own script prints (default: :meth:`describe`)."""
        return self.describe(summary)


def is_up_to_date(plan: Plan) -> bool:
    """The one up-to-date rule (see the module docstring)."""
    rec = plan.step.record_in(read_record(plan.record))
    if not rec or not rec.get("complete") or rec.get("fingerprint") != plan.fingerprint:
        return False
    base = plan.record.parent
    return all((base / o).exists() for o in rec.get("outputs", []))


def finish_plan(plan: Plan) -> Plan:
    """Fill in the fingerprint of a plan (called at the end of every ``Step.plan``)."""
    plan.fingerprint, plan.described = fingerprint(plan.step.name, fingerprint_options(plan.options),
                                                   plan.backend, plan.inputs, plan.record.parent,
                                                   plan.stat_inputs, plan.decided)
    return plan


def execute(plan: Plan, force: bool = False) -> StepRecord:
    """Run a planned step unless it is up to date; write its record last."""
    step = plan.step
    if not force and is_up_to_date(plan):
        summary = _with_current_command(plan, read_record(plan.record))
        return StepRecord(step.name, summary, True, step.describe(summary))
    for folder in plan.folders:
        remove_stale_parts(folder)
    try:
        Path(plan.record).unlink(missing_ok=True)    # a run killed from here on leaves no record
    except NotADirectoryError:
        pass                                         # the folder is a file: writing will say so
    result = step.run(plan)
    base = plan.record.parent
    outputs = sorted({_rel(p, base) for p in result.outputs if Path(p).exists()})
    record = {"name": step.name, "complete": result.failure is None, "backend": plan.backend,
              "fingerprint": plan.fingerprint, "options": plan.described["options"],
              "inputs": plan.described["inputs"], "outputs": outputs, "command": step.command_line(plan)}
    summary = step.attach_record(result.summary, record)
    write_json(plan.record, summary)
    if result.failure is not None:
        raise result.failure
    return StepRecord(step.name, summary, False, step.describe(summary))


def _with_current_command(plan: Plan, summary: dict) -> dict:
    """An up-to-date record keeps its results; the command that redoes the step is the
    current one (a moved or copied work directory is not where the record was made)."""
    rec = plan.step.record_in(summary)
    command = plan.step.command_line(plan)
    if rec is None or rec.get("command") == command:
        return summary
    summary = plan.step.attach_record(summary, {**rec, "command": command})
    write_json(plan.record, summary)
    return summary


def refuse_inputs_inside(files, folder: Path) -> None:
    """Files a user names are inputs: one inside the folder a step writes would be
    overwritten or removed by it (exit 2, naming the file)."""
    out = Path(folder).resolve()
    for f in files:
        p = Path(f).resolve()
        if out == p.parent or out in p.parents:
            raise UsageError(f"an input file inside the folder this step writes ({out}) would be overwritten: "
                             "copy it elsewhere first", f)


def require(path: Path, message: str) -> Path:
    """An input another step makes: exit 2 with ``message`` (what to run) when it is missing."""
    if not Path(path).exists():
        raise UsageError(message, path)
    return Path(path)


def no_usable(what: str, reasons: dict, path: Path) -> DataError:
    """The failure of a step where no camera gives a result (exit 4)."""
    text = "; ".join(f"{c}: {r}" for c, r in reasons.items())
    return DataError(f"{what} ({text})", path)
