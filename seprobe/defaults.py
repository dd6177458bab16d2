"""Every default a command and its Python function share, written once (torch-free: the command line reads it
before any work)."""

from __future__ import annotations

#: the classes ``seprobe activations`` shows: the paper's Fig. 6 (goldfish, pug, plane, cliff)
CLASSES = ("goldfish", "pug", "airliner", "cliff")
#: channels sampled for the activation figures (the paper: 50)
CHANNELS = 50
#: paired-bootstrap resamples of ``seprobe ablate``
BOOTSTRAP = 2000
#: images a step, by command ("studies": the activations and ablation studies, as their reports were made)
BATCH_SIZE = {"evaluate": 50, "activations": 32, "ablate": 32, "prune": 32, "complexity": 32, "studies": 50}
#: where the probe commands write when no folder is given
OUT = {"activations": "activations", "ablate": "ablation", "prune": "pruned"}
#: loader processes, by command (the probe commands decode in the main process unless asked; training reads
#: large images with workers)
NUM_WORKERS = {"evaluate": 0, "activations": 0, "ablate": 0, "prune": 0, "train": 4}
#: untimed and timed iterations of ``seprobe complexity --time``
WARMUP, REPEATS = 3, 10
#: ``weights`` values that name a source rather than a file ("timm" and "torchvision" are older names of
#: "pretrained")
WEIGHT_SOURCES = ("pretrained", "timm", "torchvision", "random")
