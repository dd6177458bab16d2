"""The ``--device`` check that every command and the timing set-up share, and the autocast dtype of a
``--dtype`` name.

torch is imported only when the device names CUDA or a dtype is looked up, so a usage error stays as fast as
the rest of start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import SeprobeError

if TYPE_CHECKING:
    import torch


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


def autocast_dtype(name: str) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of a :data:`~seprobe.choices.DTYPES` name; ``None`` for float32 (no autocast)."""
    import torch

    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
