"""Prefix reuse (probe/prefix.py): an ablation that starts from the full pass's outputs before its first replaced
gate gives bitwise the logits of a pass from the input."""

import numpy as np
import pytest
import torch

from seprobe.data.images import Preprocessing, discover
from seprobe.models.factory import Network
from seprobe.probe.ablation import ablate
from seprobe.probe.ablation_plan import AblationPlan, CalibrationSource

from .conftest import randomize_batchnorm
from .helpers import write_class_folders


def test_prefix_reuse_gives_the_same_outcomes(tmp_path):
    folder = write_class_folders(tmp_path, dict.fromkeys("abc", 4), 12)
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = randomize_batchnorm(timm.create_model("tf_mobilenetv3_small_100")).eval()
    lm = Network(model, "timm", Preprocessing(resize=32, crop=32))
    images = discover(folder)
    runs = [ablate(lm, images, AblationPlan(per_stage=True), calibration=CalibrationSource(calibration_per_class=1),
                   progress=False, bootstrap=20, reuse=reuse) for reuse in (False, True)]
    for a, b in zip(runs[0].outcomes, runs[1].outcomes, strict=True):
        assert np.array_equal(a.kl, b.kl) and np.array_equal(a.top1, b.top1)
