"""Run a :class:`~seprobe.studies.spec.Study` into a table of measured values next to the paper's, with notes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..cost.complexity import measure
from ..models.registry import build_model, get_spec, plain_counterpart
from .spec import DECIMALS, Study, Variant


@dataclass
class StudyResult:
    study: Study
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)  # lines that say how and where it was measured
    activation_run: object | None = None              # an ActivationRun, for the activations kind
    classes: list[int] = field(default_factory=list)
    ablation_result: object | None = None             # an AblationResult, for the ablation kind


def run_study(study: Study, progress: Callable[[str], None] = lambda msg: None) -> StudyResult:
    runner = {"complexity": _complexity, "excitation": _excitation, "timing": _timing,
              "activations": _activations, "ablation": _ablation}[study.kind]
    return runner(study, progress)


def _complexity_row(v: Variant) -> tuple[dict, list[str]]:
    c = measure(v.model, **v.knobs)
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
                  and round(row[k], DECIMALS[k]) != row[f"paper_{k}"]]
    if mismatched and not v.note:
        notes.append(f"{v.label}: UNEXPLAINED difference: {'; '.join(mismatched)}")
    elif mismatched:
        notes.append(f"{v.label}: {'; '.join(mismatched)}: {v.note}")
    elif v.note:
        notes.append(f"{v.label}: {v.note}")
    return row, notes


def _complexity(study: Study, progress) -> StudyResult:
    rows, notes = [], []
    for v in study.variants:
        progress(f"{study.name}: {v.label}")
        row, n = _complexity_row(v)
        rows.append(row)
        notes += n
    context = ["Multiply-adds of one image at the model's input size (224x224; Inception-ResNet-v2 299x299; "
               "1 MAC = 1 FLOP), counted as multiplications by seprobe's "
               "SE-aware fvcore handles: convolutions, FC layers and SE's scale; not pooling or SE's squeeze "
               "(additions only), BatchNorm, activations, gates, residual sums or other elementwise products "
               "(Inception-ResNet-v2's residual scaling): the paper's convention, which "
               "reproduces its figures. Parameters in millions. "
               "SE's relative cost is against the same network without SE. A difference counts when the "
               "measured value, rounded to the paper's printed decimals, is not the paper's."]
    table = pd.DataFrame(rows)
    if "mflops" in table:  # next to the GFLOPs columns
        cols = list(table.columns)
        for k in ("mflops_diff", "paper_mflops", "mflops"):
            cols.insert(cols.index("gflops_diff") + 1, cols.pop(cols.index(k)))
        table = table[cols]
    return StudyResult(study, table, notes, context)


def _gate_values(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Every gate value of ``model`` on ``x``, all blocks in network order, flattened."""
    from ..probe.activations import GateRecorder
    from ..probe.gates import find_gates

    gates = find_gates(model)
    recorder = GateRecorder(model, gates)
    try:
        with torch.inference_mode():
            model(x)
    finally:
        recorder.remove()
    return torch.cat([recorder.values[g.name].flatten() for g in gates])


def _excitation(study: Study, progress) -> StudyResult:
    rows, notes = [], []
    for v in study.variants:
        progress(f"{study.name}: {v.label}")
        row, n = _complexity_row(v)
        notes += n
        if get_spec(v.model).has_se:
            torch.manual_seed(0)
            model = build_model(v.model, **v.knobs).eval()
            s = _gate_values(model, torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
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

    from ..cost.timing import TimingSetup, time_models

    t = dict(study.timing)
    inference_batch = t.pop("inference_batch_size", 1)
    models, pairs, paper = {}, [], {}
    for v in study.variants:
        models[v.label] = build_model(v.model, **v.knobs)
        paper[v.label] = v.paper
    plain_labels = {v.model: v.label for v in study.variants if not get_spec(v.model).has_se}
    for v in study.variants:
        if get_spec(v.model).has_se:
            plain, _ = plain_counterpart(v.model, v.knobs)
            if plain in plain_labels:
                pairs.append((v.label, plain_labels[plain]))
    frames, ratios, contexts = [], [], []
    for mode, batch in (("inference", inference_batch), ("train", t.get("batch_size", 32))):
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
    notes.append("The paper's figures: forward+backward of a minibatch of 256 on 8 Titan X GPUs (190 ms vs 209 ms) "
                 "and CPU inference of one 224x224 image (164 ms vs 167 ms); machines differ, compare ratios.")
    context = [f"Measured on {result.device_name} ({result.threads} threads), {datetime.date.today().isoformat()}, "
               f"torch {torch.__version__}."] + contexts
    return StudyResult(study, table, notes, context)


def _activations(study: Study, progress) -> StudyResult:
    from ..probe.activation_report import specificity_table
    from ..probe.activations import collect
    from ..probe.imagenet_classes import resolve_classes
    from ..probe.images import discover, select
    from ..probe.loading import load_model

    a = study.activations
    progress(f"{study.name}: {a['model']} on {a['data']}")
    images = select(discover(a["data"], a.get("labels")), a.get("samples_per_class"))
    classes = resolve_classes(a.get("classes", "goldfish,pug,airliner,cliff"))
    loaded = load_model(a["model"], str(a["weights"]))
    run = collect(loaded, images, views=a.get("views", 1), batch_size=a.get("batch_size", 50), progress=False)
    spec = specificity_table(run, classes).round(3)
    context = [f"Model `{a['model']}`, weights `{Path(a['weights']).name}`; {len(images.paths)} images "
               f"({images.layout}), {run.views} views each; top-1 {run.top1:.3f}, top-5 {run.top5:.3f} on the "
               f"evaluation crops of {run.evaluated} images."]
    return StudyResult(study, spec, list(run.notes), context, activation_run=run, classes=classes)


def _ablation(study: Study, progress) -> StudyResult:
    from ..probe.ablation import MODES, ablate
    from ..probe.images import discover, select
    from ..probe.loading import load_model

    a = study.ablation
    progress(f"{study.name}: {a['model']} on {a['data']}")
    images = discover(a["data"])
    calibration = None
    if "calibration_data" in a:
        calibration = select(discover(a["calibration_data"], a.get("calibration_labels")),
                             a.get("calibration_samples_per_class"))
    loaded = load_model(a["model"], str(a["weights"]))
    result = ablate(loaded, images, modes=a.get("modes", MODES), per_stage=a.get("per_stage", False),
                    blocks=a.get("blocks"), stage=a.get("stage"), cumulative=a.get("cumulative"),
                    calibration=calibration, calibration_per_class=a.get("calibration_per_class"),
                    calibration_views=a.get("calibration_views", 1), batch_size=a.get("batch_size", 50),
                    n_boot=a.get("n_boot", 2000), seed=a.get("seed", 0), progress=False)
    notes = list(result.notes)
    if "export_blocks" in a:
        notes.append(_export_check(result, a["export_blocks"], a.get("export_mode", "mean")))
    full = result.table.iloc[0]
    context = [f"Model `{a['model']}`, weights `{Path(a['weights']).name}`; evaluated on {result.evaluated} images "
               f"({images.layout}): top-1 {full.top1:.3f}, top-5 {full.top5:.3f}. `mean` calibration: "
               f"{result.calibration.source if result.calibration else 'none'}."]
    return StudyResult(study, _ablation_table(result), notes, context, ablation_result=result)


def _ablation_table(result) -> pd.DataFrame:
    """The report's table: one row per ablation, changes in points with their 95 % intervals."""
    t = result.table
    rows = pd.DataFrame({"ablation": t["label"], "group": t["group"], "mode": t["mode"]})
    rows["top1"] = (100 * t["top1"]).round(1)
    for key in ("top1", "top5"):
        rows[f"d_{key}"] = (100 * t[f"{key}_change"]).round(1)
        rows[f"d_{key}_ci"] = [f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" for lo, hi in zip(t[f"{key}_low"],
                                                                                    t[f"{key}_high"], strict=True)]
    rows["within_noise"] = t["within_noise"].map({True: "yes", False: "no"})  # empty for the full network
    rows["agreement"] = (100 * t["agreement"]).round(1)
    rows["kl"] = t["kl"].round(4)
    rows["se_macs_removed_pct"] = t["se_macs_removed_pct"].round(1)
    rows["params_saved"] = t["params_saved_exported"]
    return rows


def _export_check(result, blocks: str, mode: str) -> str:
    """Export ``blocks`` in ``mode``, load the file back, and compare its logits and cost with the ablated
    network's on a batch of evaluation images: the numbers the note gives."""
    import tempfile

    from ..cost.flops import DEFAULT, count_flops
    from ..probe.ablation import Ablation, GateReplacer, parse_blocks, saved
    from ..probe.folding import export_ablated, load_ablated
    from ..probe.gates import block_infos
    from ..probe.images import ViewDataset

    gates, model, loaded = result.gates, result.loaded.model, result.loaded
    chosen = parse_blocks(gates, blocks)
    means = result.calibration.means if result.calibration else None
    ds = ViewDataset(result.images, loaded.preprocessing)
    x = torch.stack([ds[i][0] for i in range(min(16, len(ds)))])
    replacer = GateReplacer(model, gates, means)
    try:
        replacer.apply(Ablation("export", "set", mode, chosen))
        with torch.inference_mode():
            ablated = model(x)
    finally:
        replacer.remove()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ablated.pth"
        export = export_ablated(model, gates, dict.fromkeys(chosen, mode), means, path, spec=loaded.name,
                                preprocessing=loaded.preprocessing)
        rebuilt = load_ablated(path).model
        size = path.stat().st_size
    with torch.inference_mode():
        diff = (rebuilt(x) - ablated).abs().max().item()
    size_in = loaded.preprocessing.crop
    # with its remaining SE blocks, so that their scale is counted as in result.total_macs (it is not an fc)
    after = count_flops(rebuilt, torch.zeros(1, 3, size_in, size_in), block_infos(rebuilt, size_in)).total(DEFAULT)
    params_after = sum(p.numel() for p in rebuilt.parameters())
    foldable = {b: "folded" in export.how[b] or mode == "identity" for b in chosen}
    p_saved = m_saved = 0
    for b in chosen:
        p, m = saved(result.costs, (b,), mode, folded=foldable[b])
        p_saved, m_saved = p_saved + p, m_saved + m
    hows = sorted(set(export.how.values()))
    return (f"export check ({mode}: {', '.join(chosen)}): the exported file ({size / 1e6:.1f} MB; "
            f"{'; '.join(hows)}), loaded back by load_ablated, gives logits within {diff:.2e} (max abs) of the "
            f"ablated network on {len(x)} evaluation images; {params_after:,} parameters "
            f"({result.total_params - params_after:,} fewer; the table says {p_saved:,}) and {after / 1e6:.3f} M "
            f"multiply-adds ({(result.total_macs - after) / 1e6:.3f} M fewer; the table says {m_saved / 1e6:.3f} M)")
