"""Every default a command and its Python function share, written once (torch-free: the command line reads it
before any work)."""

from __future__ import annotations

#: the classes ``seprobe activations`` shows: the paper's Fig. 6 (goldfish, pug, plane, cliff)
CLASSES = ("goldfish", "pug", "airliner", "cliff")
#: channels sampled for the activation figures (the paper: 50)
CHANNELS = 50
#: paired-bootstrap resamples of ``seprobe ablate``
BOOTSTRAP = 2000
#: images a step, by command
BATCH_SIZE = {"evaluate": 50, "activations": 32, "ablate": 32, "complexity": 32}
#: where the probe commands write when no folder is given
OUT = {"activations": "activations", "ablate": "ablation"}
