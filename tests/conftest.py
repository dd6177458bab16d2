import os
import pathlib

import pytest
import torch

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"

# One intra-op thread: the tests run small tensors, where a second thread gains nothing, and on a busy machine
# OpenMP's spinning threads make a ResNet-18 step 40x slower (6.4 s instead of 0.16 s measured on 2 shared cores).
# Subprocesses (the CLI tests) keep torch's default. SEPROBE_TEST_THREADS=N chooses another count.
torch.set_num_threads(int(os.environ.get("SEPROBE_TEST_THREADS", "1")))


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms, so eval-mode equivalence tests bite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
