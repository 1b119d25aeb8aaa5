"""``python -m xmmext <command>``: the same as the ``xmmext`` command."""
from xmmext.command import console

console()
