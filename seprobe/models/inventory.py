"""List the SE blocks of a model: the paper's name, channels, hidden width, parameters and module paths."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .se_block import SqueezeExcite


@dataclass(frozen=True)
class SEBlockInfo:
    """One SE block: ``name`` is ``SE_<stage>_<block>``; ``gate_path`` is the module whose output is ``s``."""

    name: str
    stage: int
    block: int
    path: str
    gate_path: str
    channels: int
    hidden_channels: int
    params: int


def se_blocks(model: nn.Module) -> list[SEBlockInfo]:
    """The named SE blocks of a seprobe model, in network order (stage, then block)."""
    found = []
    for path, module in model.named_modules():
        if isinstance(module, SqueezeExcite) and module.name:
            _, stage, block = module.name.split("_")
            found.append(SEBlockInfo(
                name=module.name,
                stage=int(stage),
                block=int(block),
                path=path,
                gate_path=f"{path}.gate",
                channels=module.channels,
                hidden_channels=module.hidden_channels,
                params=sum(p.numel() for p in module.parameters()),
            ))
    return sorted(found, key=lambda b: (b.stage, b.block))
