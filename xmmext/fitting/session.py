"""The fitting engine's own sherpa session.

sherpa's ``sherpa.astro.ui`` is one global session per process: a notebook user's data,
models and settings live there. The engine works in a private
:class:`sherpa.astro.ui.utils.Session`, so running a fit never changes (or ``clean()``s)
the user's session."""
from __future__ import annotations

__all__ = ["sherpa_session"]

_SESSION = None


def sherpa_session():
    """The engine's private sherpa session (created on first use, one per process)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = _import_sherpa().Session()
    return _SESSION


def _import_sherpa():
    """Import sherpa's UI module without its console chatter: at import it says that its
    ds9 and XSPEC back-ends are missing (this engine uses neither), on a handler of its
    own; its messages go to the step's log file instead (:func:`xmmext.core.cli.quiet_library`)."""
    import importlib
    importlib.import_module("sherpa")       # sets up sherpa's logger and its console handler
    from xmmext.core.cli import quiet_library
    quiet_library("sherpa")
    import sherpa.astro.ui.utils as utils
    return utils
