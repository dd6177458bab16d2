"""Non-finite weights, gates and logits named; foreign gate names at small crops; classes seen once flagged."""



import numpy as np
import pytest
import torch

from seprobe import SeprobeError
from seprobe.data.images import discover
from seprobe.models.blocks import find_blocks
from seprobe.models.checkpoints import read_state_dict
from seprobe.probe.activations import collect
from seprobe.probe.gate_stats import GateStats
from seprobe.report.activations import figure_class_spread

from .helpers import GOLDFISH, PUG, TwoSE, identity_model, one_line
from .helpers import write_flat_images as images


@pytest.fixture
def two_classes(tmp_path):
    root = tmp_path / "flat"
    for i, (wnid, colour) in enumerate([(GOLDFISH, (10, 200, 30)), (PUG, (200, 10, 90)), (GOLDFISH, (1, 2, 3))]):
        images(root, [f"{wnid}_{i}.png"], colour)
    return discover(root)


def test_nan_weights_are_named(tmp_path, two_classes):
    model = TwoSE()
    with torch.no_grad():
        model.conv2.weight[0, 0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(SeprobeError, match=r"nan.pth: 'conv2.weight' holds 1 non-finite values .* of 16") as e:
        read_state_dict(path)
    one_line(e)
    # in the pass (weights set in memory): the first block after the NaN, in network order
    with pytest.raises(SeprobeError, match="non-finite excitation values .* in block SE_3_1, the first"):
        collect(identity_model(model), two_classes, progress=False)
    clean = TwoSE()
    with torch.no_grad():
        clean.head.bias[3] = float("inf")
    with pytest.raises(SeprobeError, match="non-finite logits .* in the batch of .*n01443537_0.png"):
        collect(identity_model(clean), two_classes, progress=False)


def test_foreign_gate_names_refuse_tiny_inputs_and_do_not_depend_on_the_crop():
    import torchvision

    model = torchvision.models.mobilenet_v3_small().eval()
    at_224 = [(g.name, g.channels) for g in find_blocks(model, 224)]
    assert [n for n, _ in at_224] == ["SE_2_1", "SE_4_1", "SE_4_2", "SE_4_3", "SE_4_4", "SE_4_5", "SE_5_1",
                                      "SE_5_2", "SE_5_3"]
    assert [(g.name, g.channels) for g in find_blocks(model, 65)] == at_224  # 65 / ceil(65 / 32) = 21.7: stage 4
    with pytest.raises(SeprobeError, match="input size 1 is too small .*valid: a crop of at least 32 pixels"):
        find_blocks(model, 1)



def test_one_view_per_class_is_flagged_and_has_no_band(tmp_path):
    stats = GateStats({"SE_2_1": (3, 0.0, 1.0)}, num_classes=3)
    values = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], [0.9, 0.8, 0.7]], dtype=torch.float64)
    stats.update("SE_2_1", values, torch.tensor([0, 1, 2]))
    b = stats.blocks["SE_2_1"]
    assert np.isnan(b.std()[:3]).all()  # n - 1 = 0: undefined, not 0
    np.testing.assert_allclose(b.std()[3], values.numpy().std(0, ddof=1))
    assert stats.class_specificity("SE_2_1") == pytest.approx(1.0)  # by construction
    assert stats.single_view_classes() == (3, 3)
    from types import SimpleNamespace

    from seprobe.report.activations import notes as run_notes

    run = SimpleNamespace(images=SimpleNamespace(notes=()), stats=stats, views=1, per_position=False, failed=[],
                          network=SimpleNamespace(random=False))
    said = run_notes(run)
    assert len(said) == 2 and "3 of 3 classes have a single view" in said[0] and "n - 1" in said[0]
    assert "class_specificity is 1 by construction" in said[1]
    stats.update("SE_2_1", values[:1], torch.tensor([0]))
    assert stats.single_view_classes() == (2, 3)
    assert len(run_notes(run)) == 1 and "2 of 3 classes" in run_notes(run)[0]

    class Run:  # the parts of an ActivationRun that Fig. 7 reads
        pass

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.collections
    import matplotlib.pyplot as plt

    run = Run()
    run.stats, run.network = stats, identity_model()
    run.images = type("Images", (), {"class_names": ("a", "b", "c")})()
    drawn = {}
    original = plt.Figure.savefig

    def capture(fig, *args, **kwargs):
        drawn["bands"] = sum(isinstance(c, matplotlib.collections.PolyCollection)
                             for ax in fig.axes for c in ax.collections)
        drawn["title"] = fig._suptitle.get_text()
        return original(fig, *args, **kwargs)

    plt.Figure.savefig = capture
    try:
        figure_class_spread(run, 1, ["SE_2_1"], 3, tmp_path / "one")
        assert drawn["bands"] == 0 and "one view: no standard deviation" in drawn["title"]
        figure_class_spread(run, 0, ["SE_2_1"], 3, tmp_path / "two")
        assert drawn["bands"] == 1 and "2 views" in drawn["title"]
    finally:
        plt.Figure.savefig = original
