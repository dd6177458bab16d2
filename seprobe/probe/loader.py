"""How the probe commands feed images to the network, as an option dataclass (:mod:`seprobe.schema`).
Torch-free, so that the command line derives ``--batch-size --device --num-workers`` from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..defaults import BATCH_SIZE, NUM_WORKERS
from ..schema import DEVICE, Int, Options


@dataclass(frozen=True)
class Loader(Options):
    """How images are fed to the network: ``batch_size`` images a step, on ``device``, decoded by
    ``num_workers`` processes (0: in the main process). Each command has its own defaults
    (:data:`~seprobe.defaults.BATCH_SIZE`, :data:`~seprobe.defaults.NUM_WORKERS`)."""

    batch_size: Annotated[int, Int(1, metavar="N", help="images a step")] = BATCH_SIZE["activations"]
    device: Annotated[str, DEVICE] = "cpu"
    num_workers: Annotated[int, Int(0, metavar="N", help="data-loading processes")] = NUM_WORKERS["activations"]
