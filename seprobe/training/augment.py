"""The CIFAR augmentation of He et al. 2015 (Sec. 4.2) on a uint8 batch already on the training device.

Each image is zero-padded by ``pad`` pixels on every side (black, before normalisation, as torchvision's
``RandomCrop(32, padding=4)`` does), a window of the original size is cut at a random offset, and it is flipped
horizontally with probability 1/2. The offsets and flips are drawn on the CPU from the epoch's seeded
``torch.Generator`` for the whole global batch, so every rank cuts exactly the crops one process would; the
cutting itself is one gather on the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_params(generator: torch.Generator, n: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` crop offsets (row, column) in ``0..2 pad`` and ``n`` flips (bool), in that order from ``generator``."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()
    return offsets, flips


def pad_crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """``images`` (N, C, H, W) zero-padded by ``pad``, cut at ``offsets`` to H x W, mirrored where ``flips``."""
    n, _, h, w = images.shape
    device = images.device
    offsets, flips = offsets.to(device), flips.to(device)
    padded = F.pad(images, (pad, pad, pad, pad)).permute(0, 2, 3, 1)        # N, H + 2p, W + 2p, C
    rows = offsets[:, :1] + torch.arange(h, device=device)                   # N, H
    step = torch.arange(w, device=device)
    cols = offsets[:, 1:] + torch.where(flips[:, None], w - 1 - step, step)  # N, W
    cut = padded[torch.arange(n, device=device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return cut.permute(0, 3, 1, 2)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images to float ``(x / 255 - mean) / std`` per channel (``mean``, ``std``: C values in 0-1)."""
    x = images.float().div_(255)
    return x.sub_(mean.view(1, -1, 1, 1).to(x.device)).div_(std.view(1, -1, 1, 1).to(x.device))
