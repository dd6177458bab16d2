"""Mutation probe: do the tests fail when the core computes a wrong number?

Each mutant is one small wrong change to seprobe's core (the SE forward pass, gate, squeeze, stride placement,
FLOP handles and convention, the statistics' merge, class resolution, checkpoint key mapping, gate naming, the
paper's figures), written as a textual replacement that must match exactly once. The probe copies ``seprobe/``,
``tests/``, ``studies/``, ``reports/`` and ``pyproject.toml`` to a temporary folder, applies the mutant there, and
runs the tests named for it with ``PYTHONPATH`` pointing at the copy. A mutant is killed when those tests fail.

    python tests/benchmarks/mutation_probe.py             # every mutant; exit 1 if any survived
    python tests/benchmarks/mutation_probe.py --list      # names only
    python tests/benchmarks/mutation_probe.py --only se-detach,chan-m2 --baseline

``--baseline`` first runs every mutant's tests on the unmutated copy (they must pass, or the probe proves
nothing). Not run by CI: it takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("seprobe", "tests", "studies", "reports", "pyproject.toml")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str         # file under the repository root
    old: str          # text that must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids (relative to the root) that must fail


SE = "seprobe/models/se_block.py"
CONFIG = "seprobe/models/se_config.py"
RESNET = "seprobe/models/resnet.py"
FLOPS = "seprobe/cost/flops.py"
STATS = "seprobe/probe/gate_stats.py"
ABL = "seprobe/probe/ablation.py"
HOOKS = "seprobe/probe/hooks.py"
BOOT = "seprobe/probe/bootstrap.py"
CALIB = "seprobe/probe/calibration.py"
FOLD = "seprobe/models/ablated.py"
CLASSES = "seprobe/data/imagenet_classes.py"
CKPT = "seprobe/models/checkpoints.py"
GATES = "seprobe/models/blocks.py"
T_SE = "tests/test_se_block.py"
T_CX = "tests/test_complexity.py"
T_ACT = "tests/test_activations.py"
T_CLS = "tests/test_imagenet_classes.py"
T_ZOO = "tests/test_zoo.py"
T_ABL = "tests/test_ablation.py"
T_INT = "tests/test_se_placement.py"

MUTANTS = (
    # the SE block (Eq. 2-4)
    Mutant("se-detach", SE, "return x * s\n", "return x * s.detach()\n",
           (f"{T_SE}::test_gradients_reach_every_se_parameter",)),
    Mutant("se-no-hidden-relu", SE, "self.fc2(self.act(self.fc1(", "self.fc2((self.fc1(", (T_SE,)),
    Mutant("squeeze-sum", SE, "return x.mean((2, 3), keepdim=True)", "return x.sum((2, 3), keepdim=True)", (T_SE,)),
    Mutant("squeeze-max-is-avg", SE, "return x.amax((2, 3), keepdim=True)", "return x.mean((2, 3), keepdim=True)",
           (T_SE,)),
    Mutant("gate-tanh-is-sigmoid", SE, '"tanh": nn.Tanh,', '"tanh": nn.Sigmoid,', (T_SE,)),
    Mutant("hidden-width-ceil", SE, "return channels // reduction", "return -(-channels // reduction)", (T_SE,)),
    # knobs reaching the blocks
    Mutant("knob-gate-dropped", CONFIG, "gate=self.gate, bias=self.bias", 'gate="sigmoid", bias=self.bias',
           (f"{T_ZOO}::test_every_knob_value_forward_backward",)),
    Mutant("knob-bias-dropped", CONFIG, "gate=self.gate, bias=self.bias", "gate=self.gate, bias=True",
           (f"{T_ZOO}::test_every_knob_value_forward_backward",)),
    Mutant("knob-squeeze-dropped", CONFIG, "squeeze=self.squeeze, gate=", 'squeeze="avg", gate=',
           (f"{T_ZOO}::test_every_knob_value_forward_backward",)),
    Mutant("drop-stage5-ignored", CONFIG, " and not (self.drop_stage5 and stage == 5)", "",
           ("tests/test_resnet_params.py::test_stage5_removal_is_one_flag_and_cuts_the_increase",)),
    # stride placement and SE placement (Fig. 5)
    Mutant("stride-swapped", RESNET, "s1, s3 = (stride, 1) if stride_at", "s1, s3 = (1, stride) if stride_at",
           (f"{T_CX}::test_resnet50_conv_fc_equals_hand_count", "tests/test_se_placement.py")),
    Mutant("identity-se-skipped", RESNET, "identity = block.se(identity)", "identity = identity",
           ("tests/test_se_placement.py",)),
    # FLOP handles and convention
    Mutant("scale-by-first-input", FLOPS, "output_elements = elementwise_flop_counter(input_scale=0, output_scale=1)",
           "output_elements = elementwise_flop_counter(input_scale=1, output_scale=0)",
           (f"{T_CX}::test_foreign_se_counted_on_the_feature_map",)),
    Mutant("squeeze-per-output", FLOPS, 'analysis.set_op_handle(f"aten::{op}", input_elements)',
           'analysis.set_op_handle(f"aten::{op}", output_elements)',
           (f"{T_CX}::test_se_additions_equal_hand_counts",)),
    Mutant("se-scale-not-counted", FLOPS, 'counted = {"conv", "fc", "se_fc", "se_scale"}',
           'counted = {"conv", "fc", "se_fc"}',
           (f"{T_CX}::test_se_additions_equal_hand_counts",)),
    Mutant("pooling-flag-drops-squeeze", FLOPS, 'counted |= {"pool", "se_squeeze"}', 'counted |= {"pool"}',
           (f"{T_CX}::test_se_additions_equal_hand_counts",)),
    Mutant("relu-not-counted", FLOPS, 'ACT_OPS = {"relu", "relu_", ', "ACT_OPS = {",
           (f"{T_CX}::test_count_flags_add_hand_counted_operations",)),
    Mutant("gate-counted-as-hidden-act", FLOPS, 'parts["act"] -= gate', 'parts["act"] -= 0',
           (f"{T_CX}::test_se_additions_equal_hand_counts",)),
    # statistics (Chan et al.'s merge, std, histogram)
    Mutant("chan-m2", STATS, "self.m2[seen] += m2[seen] + delta**2 * n_a * n_b / n", "self.m2[seen] += m2[seen]",
           (f"{T_ACT}::test_gate_statistics_equal_the_values_known_by_construction",
            f"{T_ACT}::test_shards_merge_into_the_union")),
    Mutant("chan-mean-weight", STATS, "self.mean[seen] += delta * n_b / n", "self.mean[seen] += delta * n_a / n",
           (f"{T_ACT}::test_gate_statistics_equal_the_values_known_by_construction",
            f"{T_ACT}::test_shards_merge_into_the_union")),
    Mutant("std-ddof0", STATS, "self.m2 / (self.count[:, None] - 1)", "self.m2 / self.count[:, None]",
           (f"{T_ACT}::test_gate_statistics_equal_the_values_known_by_construction",)),
    Mutant("share-above-off-by-one-bin", STATS, "* BINS) + 1\n", "* BINS) + 2\n",
           (f"{T_ACT}::test_share_above_a_threshold_on_gates_spanning_it",)),
    Mutant("top-edge-overflows", STATS, "idx = torch.where(v == b.high, torch.full_like(idx, BINS), idx)", "pass",
           (f"{T_ACT}::test_gates_at_the_top_of_the_range_are_in_the_last_bin",)),
    Mutant("eta2-total-within-classes", STATS, "total = b.m2[self.all_group].sum()",
           "total = b.m2[: self.num_classes].sum()",
           (f"{T_ACT}::test_class_specificity_is_the_correlation_ratio",)),
    # class resolution
    Mutant("partial-name-lowest-index", CLASSES, "if len(words) == 1:\n        return words.pop()",
           "if words:\n        return min(words)", (T_CLS,)),
    Mutant("exact-name-lowest-index", CLASSES, "if len(exact) == 1:\n        return exact.pop()",
           "if exact:\n        return min(exact)", (T_CLS,)),
    Mutant("paper-alias-dropped", CLASSES, "exact |= set(PAPER_ALIASES.get(q, ()))", "pass", (T_CLS,)),
    # checkpoint key mapping
    Mutant("legacy-se-key-unmapped", CKPT, r'(re.compile(r"\.se_module\."), ".se."),', "",
           ("tests/test_checkpoints.py::test_checkpoint_files_load_with_weights_only",)),
    Mutant("dataparallel-prefix-kept", CKPT, 'k.removeprefix("module."): v', "k: v",
           ("tests/test_checkpoints.py::test_checkpoint_files_load_with_weights_only",)),
    Mutant("legacy-seresnet-stride", CKPT, '"stride_at": "1x1", "stem_pool": "ceil"})',
           '"stride_at": "3x3", "stem_pool": "ceil"})',
           ("tests/test_checkpoints.py::test_timm_weights_give_identical_logits",)),
    # gate naming of foreign networks
    Mutant("foreign-stage-off-by-one", GATES, "stage = round(math.log2(size / side))",
           "stage = round(math.log2(size / side)) + 1",
           (f"{T_ZOO}::test_torchvision_se_networks_are_named_by_the_rule",)),
    Mutant("foreign-channels-from-output-side", GATES, "(inputs[0].shape[1], inputs[0].shape[-1])",
           "(inputs[0].shape[1], inputs[0].shape[-1] * 2)",
           (f"{T_ZOO}::test_torchvision_se_networks_are_named_by_the_rule",)),
    # architectures and the paper's figures
    Mutant("shufflenet-bottleneck-half", "seprobe/models/shufflenet_v1.py", "mid = cout // 4", "mid = cout // 2",
           (f"{T_CX}::test_paper_figures_reproduced_or_explained",)),
    Mutant("bn-inception-pool-projection", "seprobe/models/inception.py", '("4a", 224, 64, 96, 96, 128, "avg", 128, 1)',
           '("4a", 224, 64, 96, 96, 128, "avg", 96, 1)', (f"{T_CX}::test_paper_figures_reproduced_or_explained",)),
    Mutant("mobilenet-first-block-strided", "seprobe/models/mobilenet_v1.py", "MOBILENET_V1 = ((64, 1), (128, 2)",
           "MOBILENET_V1 = ((64, 2), (128, 2)",  # same parameters, a quarter of the later multiply-adds
           (f"{T_CX}::test_paper_figures_reproduced_or_explained",)),
    Mutant("resnet101-one-block-short", "seprobe/models/registry.py", '"resnet101": (SEBottleneck, [3, 4, 23, 3]',
           '"resnet101": (SEBottleneck, [3, 4, 22, 3]',
           ("tests/test_resnet_params.py::test_plain_models_match_torchvision",)),
    Mutant("paper-shufflenet-figure", "seprobe/paper.py", 'mflops=140, params_m=1.8', 'mflops=145, params_m=1.8',
           ("tests/test_studies.py::test_committed_reports_are_fresh",)),
    # ablation and folding (issue 10)
    Mutant("ablation-identity-is-zero", HOOKS, 'torch.ones(c) if mode == "identity"',
           'torch.zeros(c) if mode == "identity"',
           (f"{T_ABL}::test_constant_gate_mean_is_lossless_and_identity_a_known_rescaling",)),
    Mutant("ablation-mean-is-one", HOOKS, 'if mode == "identity" else self.means[name]',
           'if mode == "identity" else torch.ones(c)',
           (f"{T_ABL}::test_input_dependent_gate_mean_is_lossy_by_the_calibration_mean",)),
    Mutant("ablation-kl-reversed", ABL, "(reference.exp() * (reference - logp))", "(logp.exp() * (logp - reference))",
           (f"{T_ABL}::test_input_dependent_gate_mean_is_lossy_by_the_calibration_mean",)),
    Mutant("bootstrap-one-sided", BOOT, "return np.quantile(means, [alpha, 1 - alpha], axis=1).T",
           "return np.quantile(means, [alpha, 1 - alpha / 2], axis=1).T",
           (f"{T_ABL}::test_paired_bootstrap_known_answers",)),
    Mutant("ablation-top1-top5-intervals-swapped", ABL,
           "top1_low=ci1[k - 1, 0], top1_high=ci1[k - 1, 1], top5_low=ci5[k - 1, 0],\n"
           "                           top5_high=ci5[k - 1, 1])",
           "top1_low=ci5[k - 1, 0], top1_high=ci5[k - 1, 1], top5_low=ci1[k - 1, 0],\n"
           "                           top5_high=ci1[k - 1, 1])",
           (f"{T_ABL}::test_top5_interval_is_top5s_own",)),
    Mutant("ablation-top5-bounds-swapped", ABL,
           "top5_low=ci5[k - 1, 0],\n                           top5_high=ci5[k - 1, 1])",
           "top5_low=ci5[k - 1, 1],\n                           top5_high=ci5[k - 1, 0])",
           (f"{T_ABL}::test_top5_interval_is_the_bootstrap_of_top5s_own_per_image_differences",)),
    Mutant("calibration-mean-of-class-means", CALIB,
           "torch.from_numpy(run.stats.blocks[b.name].mean[all_group].copy())",
           "torch.from_numpy(run.stats.blocks[b.name].mean[:all_group][run.stats.blocks[b.name].count[:all_group] > 0]"
           ".mean(0))", (f"{T_ABL}::test_calibration_mean_is_over_images_not_classes",)),
    Mutant("atomic-write-keeps-tmp", "seprobe/io.py", "    except BaseException:\n        tmp.unlink(missing_ok=True)\n"
           "        raise\n    return path", "    except BaseException:\n        raise\n    return path",
           ("tests/test_io.py",)),
    Mutant("pre-se-on-plain-identity", RESNET, "out = block.relu(out + identity)",
           'out = block.relu(out + (block.se(x) if block.integration == "pre" and block.downsample is None '
           "else identity))", (f"{T_INT}::test_pre_integration_without_downsampling_keeps_the_raw_identity",)),
    Mutant("fold-bn-bias-unscaled", FOLD, "            module.bias.mul_(s)\n", "",
           ("tests/test_ablated_export.py::test_fold_seprobe_resnet_standard_into_bn",)),
    Mutant("fold-conv-output-axis", FOLD, "module.weight.mul_(s.view(1, -1, *([1] * (module.weight.dim() - 2))))",
           "module.weight.mul_(s.view(-1, 1, *([1] * (module.weight.dim() - 2))))",
           ("tests/test_ablated_export.py::test_fold_timm_mobilenetv3_into_the_projection",)),
)


def copy_tree(dest: Path) -> Path:
    repo = dest / "repo"
    repo.mkdir(parents=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            shutil.copy2(src, repo / name)
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # tests find ../shared beside the repository
        (dest / "shared").symlink_to(shared)
    return repo


def apply(repo: Path, m: Mutant) -> None:
    path = repo / m.path
    text = path.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutant {m.name}: {m.old!r} occurs {text.count(m.old)} times in {m.path}; valid: once")
    path.write_text(text.replace(m.old, m.new))


def run_tests(repo: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = -1
    return rc, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--baseline", action="store_true", help="first check that the tests pass unmutated")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant (default 600)")
    args = parser.parse_args()
    mutants = MUTANTS
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {m.name for m in MUTANTS})
        if unknown:
            parser.error(f"unknown mutant {unknown[0]!r}; valid: {', '.join(m.name for m in MUTANTS)}")
        mutants = tuple(m for m in MUTANTS if m.name in wanted)
    if args.list:
        for m in mutants:
            print(f"{m.name:36s} {m.path}")
        return 0
    with tempfile.TemporaryDirectory(prefix="seprobe-mutants-") as tmp:
        pristine = copy_tree(Path(tmp) / "pristine")
        for m in mutants:  # every replacement must match before anything runs
            if (pristine / m.path).read_text().count(m.old) != 1:
                apply(pristine, m)  # raises with the count
        if args.baseline:
            tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
            rc, seconds = run_tests(pristine, tests, args.timeout * 2)
            print(f"baseline: {'pass' if rc == 0 else f'FAIL (exit {rc})'} in {seconds:.0f} s", flush=True)
            if rc != 0:
                return 2
        survived = []
        for i, m in enumerate(mutants):
            work = Path(tmp) / f"m{i}"
            work.mkdir()
            repo = copy_tree(work)
            apply(repo, m)
            rc, seconds = run_tests(repo, m.tests, args.timeout)
            if rc == 1:
                verdict = "killed"
            elif rc == 0:
                verdict = "SURVIVED"
                survived.append(m.name)
            else:
                verdict = "killed (timeout)" if rc == -1 else f"killed (pytest exit {rc}: error, not a failure)"
            print(f"{verdict:10s} {m.name:36s} {seconds:5.0f} s", flush=True)
            shutil.rmtree(work)
    killed = len(mutants) - len(survived)
    print(f"mutation probe: {killed}/{len(mutants)} killed" + (f"; survived: {', '.join(survived)}" if survived
                                                                  else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
