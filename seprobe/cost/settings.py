"""How ``seprobe complexity`` counts and times, as option dataclasses (:mod:`seprobe.schema`): what a multiply-add
total counts (:class:`FlopConvention`) and how the timing runs (:class:`TimingSetup`). Torch-free, so that the
command line derives its options from them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..defaults import BATCH_SIZE, REPEATS, WARMUP
from ..errors import SeprobeError
from ..schema import CHANNELS_LAST, COMPILE, DEVICE, DTYPE, Bool, Choice, Int, Items, Options

TIMING_MODES = ("inference", "train")
#: a side larger than this is surely a typo (a 4096x4096 image through ResNet-50 already needs ~60 GB to train)
MAX_INPUT_SIZE = 4096


@dataclass(frozen=True)
class FlopConvention(Options):
    """Which categories a total counts. Multiply-adds always; the rest as the flags say."""

    bn: Annotated[bool, Bool(flags=("--count-bn",), help="count BatchNorm (fvcore: 2/element)")] = False
    activations: Annotated[bool, Bool(flags=("--count-activations",), help="count activations, gates")] = False
    adds: Annotated[bool, Bool(flags=("--count-adds",), help="count residual adds")] = False
    pooling: Annotated[bool, Bool(flags=("--count-pooling",), help="count pooling and SE squeeze adds")] = False
    muls: Annotated[bool, Bool(flags=("--count-muls",),
                               help="count other elementwise products (residual scaling)")] = False

    def categories(self) -> set[str]:
        counted = {"conv", "fc", "se_fc", "se_scale", "se_spatial_conv", "se_spatial_scale"}
        if self.muls:
            counted.add("mul")
        if self.pooling:
            counted |= {"pool", "se_squeeze", "se_spatial_pool"}
        if self.bn:
            counted |= {"norm", "se_norm", "se_spatial_norm"}
        if self.activations:
            counted |= {"act", "se_act", "se_gate", "se_spatial_gate"}
        if self.adds:
            counted |= {"add", "se_add"}
        return counted


@dataclass(frozen=True)
class TimingSetup(Options):
    """How ``seprobe complexity --time`` times: device, batch, input side, autocast dtype, memory format,
    ``torch.compile``, untimed and timed iterations, modes, and whether CUDA out-of-memory halves the batch."""

    device: Annotated[str, DEVICE] = "cpu"
    batch_size: Annotated[int, Int(1, metavar="N", help="batch size (for --time)")] = BATCH_SIZE["complexity"]
    input_size: Annotated[int, Int(1, MAX_INPUT_SIZE, cli=False)] = 224
    dtype: Annotated[str, DTYPE] = "float32"
    channels_last: Annotated[bool, CHANNELS_LAST] = False
    compile: Annotated[bool, COMPILE] = False
    warmup: Annotated[int, Int(0, metavar="N", help="untimed iterations")] = WARMUP
    repeats: Annotated[int, Int(1, metavar="N", help="timed iterations")] = REPEATS
    modes: Annotated[tuple[str, ...], Items(item=Choice(choices=TIMING_MODES), item_name="timing mode",
                                            example='"inference", "train"', cli=False)] = TIMING_MODES
    auto_batch: Annotated[bool, Bool(flags=("--auto-batch",), help="halve the batch on GPU out-of-memory")] = False

    def validate(self) -> None:
        if self.compile and self.warmup < 1:
            raise SeprobeError(f"invalid warmup {self.warmup} with compile: the first call compiles; valid: an "
                               "integer >= 1", argument="warmup")
