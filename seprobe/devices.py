"""The ``--device`` check that every command and the timing set-up share.

torch is imported only when the device names CUDA, so a usage error stays as fast as the rest of start-up.
"""

from __future__ import annotations

from .errors import SeprobeError


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` with a GPU that exists; anything else is one :class:`SeprobeError`."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdecimal())):
        raise SeprobeError(f"invalid device {device!r}; valid: cpu, cuda, cuda:N", argument="device")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SeprobeError(f"device {device!r}, but torch sees no CUDA GPU; valid: cpu", argument="device")
        if index and int(index) >= torch.cuda.device_count():
            raise SeprobeError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s); valid: "
                               f"cuda:0 ... cuda:{torch.cuda.device_count() - 1}", argument="device")
    return device
