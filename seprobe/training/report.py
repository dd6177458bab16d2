"""The text and figures of a training run: one line per epoch, ``summary.md``, ``curves.png`` / ``.svg``."""

from __future__ import annotations

import platform
from pathlib import Path

import pandas as pd
import torch

from ..figures import new_figure, save_figure
from ..version import __version__
from .batches import PAD


def epoch_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f}, train top-1 "
            f"{100 * row['train_top1']:.2f} %, val top-1 {100 * row['val_top1']:.2f} %, val top-5 "
            f"{100 * row['val_top5']:.2f} %, lr {row['lr']:.4g}, {row['seconds']:.1f} s, "
            f"{row['images_per_s']:.0f} img/s")


def _versions() -> str:
    import torchvision

    return (f"seprobe {__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
            f"Python {platform.python_version()}")


def _table(record: dict) -> list[str]:
    return [f"| {k} | {v} |" for k, v in record.items()]


def summary_markdown(record: dict, history: pd.DataFrame, data: dict, device: str, ranks: int = 1) -> str:
    last = history.iloc[-1]
    best = history.loc[history["val_top1"].idxmax()]
    meta = record["meta"]
    lines = [f"# Training run: {meta.get('model', 'model')}", "",
             f"Final (epoch {int(last['epoch'])}): val top-1 {100 * last['val_top1']:.2f} %, top-5 "
             f"{100 * last['val_top5']:.2f} %, train loss {last['train_loss']:.4f}.",
             f"Best val top-1: {100 * best['val_top1']:.2f} % at epoch {int(best['epoch'])}.", "",
             "## Model", "", "| field | value |", "|---|---|", *_table(meta), "",
             "## Recipe", "", "| field | value |", "|---|---|", *_table(record["recipe"]), "",
             "## Data", "", "| field | value |", "|---|---|",
             *_table({k: v for k, v in data.items() if k != "classes"}), "",
             f"Augmentation: {augmentation(data)}. Normalised by the mean and std above.",
             "Training drops each epoch's last incomplete batch; validation counts every image once.", "",
             "## Environment", "", f"Device {device}, {ranks} rank(s), {torch.get_num_threads()} thread(s) each; "
             f"{_versions()}.", "",
             "## History", "", *_history_table(history), ""]
    return "\n".join(lines)


def augmentation(data: dict) -> str:
    """The augmentation a run of ``data`` (:meth:`Datasets.describe`) gets, in words."""
    side = data["side"]
    if data["in_memory"]:
        return (f"{PAD}-pixel zero padding, a random {side} x {side} crop and a horizontal flip at training (on the "
                "tensor batch); the images as they are at validation")
    return (f"a random resized crop to {side} x {side} (scale 0.08-1) and a horizontal flip at training; the "
            "model's evaluation resize and centre crop at validation")


def _history_table(history: pd.DataFrame) -> list[str]:
    cells = [[str(int(v)) if c == "epoch" else f"{v:.4f}" for c, v in row.items()] for _, row in history.iterrows()]
    return [f"| {' | '.join(history.columns)} |", f"|{'---|' * len(history.columns)}",
            *(f"| {' | '.join(r)} |" for r in cells)]


def save_curves(history: pd.DataFrame, path: Path) -> list[Path]:
    """Loss (left) and top-1 accuracy (right) per epoch, as ``path``.png and ``path``.svg."""
    from matplotlib.ticker import MaxNLocator

    with new_figure(1, 2, figsize=(9, 3.5)) as (fig, (loss, acc)):
        loss.plot(history["epoch"], history["train_loss"], marker="o", label="train")
        loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss")
        for column, label in (("train_top1", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5")):
            acc.plot(history["epoch"], 100 * history[column], marker="o", label=label)
        acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
        acc.legend()
        for ax in (loss, acc):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        return save_figure(fig, path)


def result_text(result, model: str) -> str:
    """The terminal view of a finished run: its last and best epochs, and where its files are."""
    last, best = result.final, result.best
    return (f"{model}: val top-1 {100 * last['val_top1']:.2f} %, top-5 {100 * last['val_top5']:.2f} % after "
            f"{int(last['epoch'])} epochs (best top-1 {100 * best['val_top1']:.2f} % at epoch {int(best['epoch'])}); "
            f"{last['images_per_s']:.0f} training images/s\n")
