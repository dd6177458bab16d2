"""``python -m seprobe``, ``torchrun -m seprobe`` and the ``seprobe`` script: the command line.

The import of the command line runs inside :func:`seprobe.interrupts.run_command`, so a Ctrl-C at start-up is
also one line; that module holds what every signal does at each phase.
"""

from .interrupts import run_command


def run() -> None:
    run_command(_command_line)


def _command_line() -> None:
    from .cli import main

    main()


if __name__ == "__main__":
    run()
