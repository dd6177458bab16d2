"""Run a :class:`~seprobe.studies.study_file.Study` into a table of measured values next to the paper's, with notes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from .. import api
from ..cost.complexity import Complexity
from ..defaults import BATCH_SIZE
from ..interrupts import clean_up_on_interrupt
from ..models.factory import ModelSource, get_network
from ..paper import by_key
from ..probe.reading import GateReading
from ..report.ablation import calibration_text, study_table
from ..report.ablation import notes as ablation_notes
from ..report.activations import notes as activation_notes
from ..schema import fields
from .result import StudyResult
from .study_file import ABLATION_EXTRA, ACTIVATIONS_EXTRA, DECIMALS, TIMING_EXTRA, Study, Variant, ablation_options


def run_study(study: Study, progress: Callable[[str], None] = lambda msg: None, *, runs: Path | None = None,
              budget: str | None = None) -> StudyResult:
    """Run one study; a training study trains into (or reads its runs from) ``runs``, with ``budget``."""
    if study.kind == "training":
        from .trained import run_training_study

        return run_training_study(study, runs, budget, progress)
    runner = {"complexity": _complexity, "excitation": _excitation, "timing": _timing,
              "activations": _activations, "ablation": _ablation}[study.kind]
    return runner(study, progress)


def _decimals(key: str, printed: float) -> int:
    """The decimals a figure is compared at: the paper's usual ones for ``key``, or more where this figure
    prints more (CBAM's 3.858 GFLOPs)."""
    text = repr(float(printed))
    shown = 0 if text.endswith(".0") else len(text.partition(".")[2])
    return max(DECIMALS[key], shown)


def _complexity_row(v: Variant) -> tuple[dict, list[str], Complexity]:
    """A variant's row of measured and printed figures, the notes on them, and the count they come from."""
    c = api.complexity(v.model, **v.knobs).results[0]
    row = {"variant": v.label, "model": v.model,
           "knobs": "; ".join(f"{k}={','.join(map(str, x)) if isinstance(x, (tuple, list)) else x}"
                              for k, x in sorted(v.knobs.items()))}
    for key, value in (("gflops", round(c.total / 1e9, 4)), ("mflops", round(c.total / 1e6, 1)),
                       ("params_m", round(c.params / 1e6, 3))):
        paper = v.paper.get(key)
        if key == "mflops" and paper is None:
            continue  # MFLOPs only for the mobile networks, whose figures the paper prints in MFLOPs
        row[key], row[f"paper_{key}"] = value, paper
        row[f"{key}_diff"] = round(value - paper, 4) if paper is not None else None
    base_flops, base_params = (c.plain_total, c.plain_params) if c.plain_flops is not None else (c.total, c.params)
    row["se_gflops_pct"] = round(100 * (c.total - base_flops) / base_flops, 2)
    row["se_params_pct"] = round(100 * (c.params - base_params) / base_params, 2)
    for key in ("top1_err", "top5_err"):
        if key in v.paper:
            row[f"paper_{key}"] = v.paper[key]
    notes = []
    mismatched = [f"{row[k]:.{DECIMALS[k] + 2}f} measured vs {row[f'paper_{k}']} printed ({k})"
                  for k in DECIMALS if row.get(f"paper_{k}") is not None
                  and round(row[k], _decimals(k, row[f"paper_{k}"])) != row[f"paper_{k}"]]
    if mismatched and not v.note:
        notes.append(f"{v.label}: UNEXPLAINED difference: {'; '.join(mismatched)}")
    elif mismatched:
        notes.append(f"{v.label}: {'; '.join(mismatched)}: {v.note}")
    elif v.note:
        notes.append(f"{v.label}: {v.note}")
    return row, notes, c


def _without_scales(c: Complexity) -> float:
    """GFLOPs without the gates' scales (Eq. 4, and a spatial gate's), as CBAM's and ECA-Net's tables count."""
    scales = sum(p.get("scale", 0) + p.get("spatial_scale", 0) for p in c.flops.per_block.values())
    return round((c.total - scales) / 1e9, 4)


def _step_time_columns(study: Study, progress) -> dict[str, dict]:
    from ..cost.settings import TimingSetup
    from ..cost.timing import step_times

    progress(f"{study.name}: timing the training step of every variant, interleaved")
    models = {v.label: get_network(ModelSource(v.model, "random", v.knobs)).model for v in study.variants}
    setup = TimingSetup(**{k: x for k, x in study.timing.items() if k in fields(TimingSetup)})
    return step_times(models, study.variants[0].label, setup)


def _complexity(study: Study, progress) -> StudyResult:
    rows, notes = [], []
    for v in study.variants:
        progress(f"{study.name}: {v.label}")
        row, n, c = _complexity_row(v)
        if "gflops_without_scales" in study.columns:
            row["gflops_without_scales"] = _without_scales(c)
        rows.append(row)
        notes += n
    extra_context = []
    if "step_time" in study.columns:
        steps = _step_time_columns(study, progress)
        for row in rows:
            row.update(steps[row["variant"]])
        setup = study.timing
        extra_context.append(
            f"`train_step_ms`: one training step (forward + backward) of a batch of {setup.get('batch_size')} "
            f"random {setup.get('input_size', 224)}x{setup.get('input_size', 224)} images on "
            f"{setup.get('device', 'cpu')} ({torch.get_num_threads()} threads) of the machine that writes the "
            "report, every variant interleaved in one process (median of the repeats), `step_ratio` its ratio to "
            f"the first variant's ({study.variants[0].label}), pair by pair; measured anew by each report.")
    if "gflops_without_scales" in study.columns:
        extra_context.append("`gflops_without_scales`: the same count without the gates' scales (Eq. 4: one "
                             "multiply per element of each recalibrated map; CBAM's spatial gate likewise), as "
                             "CBAM's and ECA-Net's tables count.")
    context = ["Multiply-adds of one image at the model's input size (224x224; Inception-ResNet-v2 299x299; "
               "1 MAC = 1 FLOP), counted as multiplications by seprobe's "
               "SE-aware fvcore handles: convolutions, FC layers and SE's scale; not pooling or SE's squeeze "
               "(additions only), BatchNorm, activations, gates, residual sums or other elementwise products "
               "(Inception-ResNet-v2's residual scaling): the paper's convention, which "
               "reproduces its figures. Parameters in millions. "
               "SE's relative cost is against the same network without SE. A difference counts when the "
               "measured value, rounded to the paper's printed decimals, is not the paper's.", *extra_context]
    table = pd.DataFrame(rows)
    if "mflops" in table:  # next to the GFLOPs columns
        cols = list(table.columns)
        for k in ("mflops_diff", "paper_mflops", "mflops"):
            cols.insert(cols.index("gflops_diff") + 1, cols.pop(cols.index(k)))
        table = table[cols]
    return StudyResult(study, table, notes, context)


def _gate_values(model: torch.nn.Module, blocks, x: torch.Tensor) -> torch.Tensor:
    """Every gate value of ``model`` on ``x``, all blocks in network order, flattened."""
    from ..probe.hooks import recorded_gates

    with recorded_gates(model, blocks) as values, torch.inference_mode():
        model(x)
    return torch.cat([values[b.name].flatten() for b in blocks])


def _excitation(study: Study, progress) -> StudyResult:
    rows, notes = [], []
    for v in study.variants:
        progress(f"{study.name}: {v.label}")
        row, n, _ = _complexity_row(v)
        notes += n
        source = ModelSource(v.model, "random", v.knobs)
        if source.spec.has_se:
            net = get_network(source)
            s = _gate_values(net.model, net.blocks, torch.randn(2, 3, 224, 224,
                                                                generator=torch.Generator().manual_seed(0)))
            row.update({"gate_min": s.min().item(), "gate_p05": s.quantile(0.05).item(),
                        "gate_median": s.median().item(), "gate_p95": s.quantile(0.95).item(),
                        "gate_max": s.max().item(), "gate_zero_pct": 100 * (s == 0).float().mean().item(),
                        "gate_negative_pct": 100 * (s < 0).float().mean().item()})
            row.update({k: round(val, 2) + 0.0 for k, val in row.items() if k.startswith("gate_")})  # no -0.0
        rows.append(row)
    context = ["Cost as in the complexity studies: a gate is one operation per gate value, not a multiply-add, "
               "so the three gates cost the same.",
               "Gate values: every SE gate of a randomly initialised SE-ResNet-50 (torch seed 0, eval mode) on two "
               "random N(0, 1) 224x224 images: the range each non-linearity can produce, not what a trained "
               "network produces (see the activations study)."]
    return StudyResult(study, pd.DataFrame(rows), notes, context)


def _timing(study: Study, progress) -> StudyResult:
    import datetime

    from ..cost.timing import TimingSetup, plain_pairs, time_models

    t = dict(study.timing)
    inference_batch = t.pop("inference_batch_size", TIMING_EXTRA["inference_batch_size"].default)
    models, pairs = plain_pairs({v.label: ModelSource(v.model, "random", v.knobs) for v in study.variants},
                                add_plain=False)
    paper = {v.label: v.paper for v in study.variants}
    frames, ratios, contexts = [], [], []
    for mode, batch in (("inference", inference_batch), ("train", t.get("batch_size", BATCH_SIZE["complexity"]))):
        setup = TimingSetup(**{**t, "batch_size": batch, "modes": (mode,)})
        result = time_models(models, pairs, setup, progress=progress)
        frames.append(result.summary)
        ratios.append(result.ratios)
        contexts.append(f"{mode}: batch {setup.batch_size}, {setup.dtype}, "
                        f"{'channels_last' if setup.channels_last else 'contiguous'}, {setup.warmup} warm-up + "
                        f"{setup.repeats} timed iterations, models interleaved")
    table = pd.concat(frames, ignore_index=True).rename(columns={"model": "variant"}).round(2)
    table["paper_ms"] = [paper[r.variant].get("gpu_train_ms" if r.mode == "train" else "cpu_inference_ms")
                         for r in table.itertuples()]
    ratio = pd.concat(ratios, ignore_index=True)
    notes = [f"{r.model} / {r.baseline} ({r.mode}): time ratio {r.ratio_median:.3f} "
             f"(IQR {r.ratio_q1:.3f}-{r.ratio_q3:.3f}, {r.pairs} pairs), SE overhead {r.overhead_pct:+.1f} %"
             for r in ratio.itertuples()]
    base, se = by_key("Section 4: ResNet-50"), by_key("Section 4: SE-ResNet-50")
    notes.append(f"The paper's figures: forward+backward of a minibatch of 256 on 8 Titan X GPUs "
                 f"({base.gpu_train_ms:g} ms vs {se.gpu_train_ms:g} ms) and CPU inference of one 224x224 image "
                 f"({base.cpu_inference_ms:g} ms vs {se.cpu_inference_ms:g} ms); machines differ, compare ratios.")
    context = [f"Measured on {result.device_name} ({result.threads} threads), {datetime.date.today().isoformat()}, "
               f"torch {torch.__version__}."] + contexts
    return StudyResult(study, table, notes, context)


def _activations(study: Study, progress) -> StudyResult:
    from ..probe.evaluation import Loader

    a = study.activations
    progress(f"{study.name}: {a['model']} on {a['data']}")
    reading = {k: v for k, v in a.items() if k in fields(GateReading)}
    done = api.activations(a["model"], str(a["weights"]), a["data"], labels=a.get("labels"),
                           samples_per_class=a.get("samples_per_class"), **reading,
                           loader=Loader(a.get("batch_size", ACTIVATIONS_EXTRA["batch_size"].default)),
                           progress=False)
    run = done.run
    context = [f"Model `{a['model']}`, weights `{Path(a['weights']).name}`; {len(run.images.paths)} images "
               f"({run.images.layout}), {run.views} views each; top-1 {run.top1:.3f}, top-5 {run.top5:.3f} on the "
               f"evaluation crops of {run.evaluated} images."]
    return StudyResult(study, done.scores.round(3), activation_notes(run), context, activation_run=run,
                       classes=done.classes)


def _ablation(study: Study, progress) -> StudyResult:
    import tempfile

    from ..probe.evaluation import Loader

    a = study.ablation
    progress(f"{study.name}: {a['model']} on {a['data']}")
    plan, calibration = ablation_options(a)
    export_blocks = a.get("export_blocks")
    with clean_up_on_interrupt(), tempfile.TemporaryDirectory() as tmp:  # an interrupt takes the folder back
        exported = Path(tmp) / "ablated.pth" if export_blocks else None
        done = api.ablate(a["model"], str(a["weights"]), a["data"], plan=plan, calibration=calibration,
                          loader=Loader(a.get("batch_size", ABLATION_EXTRA["batch_size"].default)),
                          bootstrap=a.get("bootstrap", ABLATION_EXTRA["bootstrap"].default),
                          seed=a.get("seed", ABLATION_EXTRA["seed"].default), progress=False)
        result = done.result
        notes = ablation_notes(result)
        if export_blocks:
            notes.append(_export_check(result, list(export_blocks),
                                       a.get("export_mode", ABLATION_EXTRA["export_mode"].default), exported))
    full = result.table.iloc[0]
    context = [f"Model `{a['model']}`, weights `{Path(a['weights']).name}`; evaluated on {result.evaluated} images "
               f"({result.images.layout}): top-1 {full.top1:.3f}, top-5 {full.top5:.3f}. `mean` calibration: "
               f"{calibration_text(result) or 'none'}."]
    return StudyResult(study, study_table(result), notes, context, ablation_result=result)


def _export_check(result, blocks: list[str], mode: str, path: Path) -> str:
    """Export ``blocks`` in ``mode`` to ``path``, load the file back as every command does, and compare its
    logits and cost with the ablated network's (gates replaced by hooks) on a batch of evaluation images: the
    numbers the note gives."""
    from ..cost.complexity import measure
    from ..cost.se_blocks import saved
    from ..data.images import ViewDataset
    from ..probe.ablation import export_blocks
    from ..probe.ablation_plan import in_network_order
    from ..probe.hooks import GateHooks

    net = result.network
    chosen = in_network_order(result.blocks, blocks)
    ds = ViewDataset(result.images, net.preprocessing)
    x = torch.stack([ds[i][0] for i in range(min(16, len(ds)))])
    means = result.calibration.means if result.calibration else None
    with GateHooks(net.model, result.blocks, means) as hooks, torch.inference_mode():
        hooks.replace(dict.fromkeys(chosen, mode))
        ablated = net.model(x)
    export = export_blocks(result, chosen, mode, path)
    rebuilt = get_network(ModelSource(net.source.name, str(path), net.source.knobs))
    with torch.inference_mode():
        diff = (rebuilt.model(x) - ablated).abs().max().item()
    after = measure(ModelSource(net.source.name, str(path), net.source.knobs))
    size = path.stat().st_size
    foldable = {b: "folded" in export.how[b] or mode == "identity" for b in chosen}
    p_saved, m_saved = saved(result.costs, chosen, mode, folded=foldable)
    hows = sorted(set(export.how.values()))
    return (f"export check ({mode}: {', '.join(chosen)}): the exported file ({size / 1e6:.1f} MB; "
            f"{'; '.join(hows)}), loaded back as every command loads it, gives logits within {diff:.2e} (max abs) "
            f"of the ablated network on {len(x)} evaluation images; {after.params:,} parameters "
            f"({result.total_params - after.params:,} fewer; the table says {p_saved:,}) and {after.total / 1e6:.3f} "
            f"M multiply-adds ({(result.total_macs - after.total) / 1e6:.3f} M fewer; the table says "
            f"{m_saved / 1e6:.3f} M)")
