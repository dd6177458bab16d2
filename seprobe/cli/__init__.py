"""The ``seprobe`` command line: parses options, builds the option objects, calls :mod:`seprobe.api` (and
:mod:`seprobe.studies.regenerate`), prints what they return. Only ``typer`` and the torch-free modules load before
an option has been checked, so ``--help``, ``--version`` and usage errors answer at once.

:mod:`.app` holds the application, the errors as flags and :func:`main`; :mod:`.options` the options several
commands share; one module per group of commands registers them (in the order ``seprobe --help`` lists them).
"""

from . import cost, probes, studies, train  # noqa: F401  (each registers its commands on the app)
from .app import app, app_commands, main

__all__ = ["app", "app_commands", "main"]
