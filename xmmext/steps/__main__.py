"""``python -m xmmext.steps <step> [options]``: the older spelling of ``xmmext <command>``
(kept for scripts that use it; ``filtering`` is ``filter`` there)."""
import sys

from xmmext.command import main

args = sys.argv[1:]
if args:
    args[0] = {"filtering": "filter"}.get(args[0], args[0])
sys.exit(main(args))
