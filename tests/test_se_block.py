"""The SE block (Eq. 2-4) against hand-written references on tiny tensors."""

import pytest
import torch
import torch.nn.functional as F

from seprobe import SeprobeError, SqueezeExcite


def _weights(se):
    return se.fc1.weight[:, :, 0, 0], se.fc1.bias, se.fc2.weight[:, :, 0, 0], se.fc2.bias


def _excite(z, se, gate):
    """Eq. 3 written out: s = gate(W2 relu(W1 z + b1) + b2), for a vector z of C values."""
    w1, b1, w2, b2 = _weights(se)
    h = [max(0.0, sum(w1[j, c].item() * z[c] for c in range(len(z))) + b1[j].item()) for j in range(w1.shape[0])]
    return [gate(torch.tensor(sum(w2[c, j].item() * h[j] for j in range(len(h))) + b2[c].item())).item()
            for c in range(w2.shape[0])]


@pytest.mark.parametrize("squeeze", ["avg", "max"])
def test_pooled_squeeze_matches_hand_reference(squeeze):
    x = torch.randn(2, 4, 3, 5)
    se = SqueezeExcite(4, reduction=2, squeeze=squeeze)
    out = se(x)
    for n in range(2):
        values = [x[n, c].flatten().tolist() for c in range(4)]
        z = [sum(v) / len(v) if squeeze == "avg" else max(v) for v in values]
        s = _excite(z, se, torch.sigmoid)
        for c in range(4):
            torch.testing.assert_close(out[n, c], x[n, c] * s[c], rtol=1e-5, atol=1e-6)


def test_nosqueeze_gates_every_position():
    """Table 16's NoSqueeze: no pooling, W1 and W2 as 1x1 convolutions: a gate per position and channel."""
    x = torch.randn(1, 4, 2, 3)
    se = SqueezeExcite(4, reduction=2, squeeze="none")
    gates = []
    se.gate.register_forward_hook(lambda m, i, o: gates.append(o))
    out = se(x)
    assert gates[0].shape == (1, 4, 2, 3)
    for i in range(2):
        for j in range(3):
            s = _excite(x[0, :, i, j].tolist(), se, torch.sigmoid)
            for c in range(4):
                torch.testing.assert_close(out[0, c, i, j], x[0, c, i, j] * s[c], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate,fn", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                     ("relu", torch.relu), ("hardsigmoid", F.hardsigmoid)])
def test_gate_choice(gate, fn):
    x = torch.randn(1, 6, 2, 2)
    se = SqueezeExcite(6, reduction=3, gate=gate)
    s = _excite(x[0].mean((1, 2)).tolist(), se, fn)
    torch.testing.assert_close(se(x)[0, :, 0, 0], x[0, :, 0, 0] * torch.tensor(s), rtol=1e-5, atol=1e-6)


def test_gate_output_is_hookable_and_is_s():
    x = torch.randn(3, 8, 4, 4)
    se = SqueezeExcite(8, reduction=4)
    seen = {}
    se.gate.register_forward_hook(lambda m, i, o: seen.setdefault("s", o))
    out = se(x)
    assert seen["s"].shape == (3, 8, 1, 1)
    torch.testing.assert_close(out, x * seen["s"])


def test_widths_bias_and_explicit_hidden():
    se = SqueezeExcite(64, reduction=16, bias=False)
    assert se.hidden_channels == 4 and se.fc1.bias is None
    assert sum(p.numel() for p in se.parameters()) == 2 * 64 * 4
    assert SqueezeExcite(64, hidden_channels=10).hidden_channels == 10
    assert SqueezeExcite(60, reduction=16).hidden_channels == 3  # C // r, as in the Caffe models


@pytest.mark.parametrize("kwargs,match", [
    ({"reduction": 0}, "reduction ratio 0"),
    ({"reduction": 65}, "larger than an SE block's 64 channels"),
    ({"reduction": 2.5}, "reduction ratio 2.5"),
    ({"squeeze": "median"}, "squeeze 'median'; valid: 'avg', 'max', 'none'"),
    ({"gate": "softmax"}, "gate 'softmax'; valid"),
])
def test_invalid_knobs_name_the_value(kwargs, match):
    with pytest.raises(SeprobeError, match=match):
        SqueezeExcite(64, **kwargs)


@pytest.mark.parametrize("gate", ["sigmoid", "tanh", "hardsigmoid"])
def test_gradients_reach_every_se_parameter(gate):
    """Backward through SE equals autograd through Eq. 2-4 written with functional ops: W1, b1, W2, b2 all learn."""
    x = torch.randn(2, 6, 3, 3)
    se = SqueezeExcite(6, reduction=2, gate=gate)
    se(x).square().sum().backward()
    w1, b1, w2, b2 = (t.detach().clone().requires_grad_() for t in (se.fc1.weight, se.fc1.bias, se.fc2.weight,
                                                                   se.fc2.bias))
    fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "hardsigmoid": F.hardsigmoid}[gate]
    s = fn(F.conv2d(F.relu(F.conv2d(x.mean((2, 3), keepdim=True), w1, b1)), w2, b2))
    (x * s).square().sum().backward()
    for ours, reference in zip((se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias), (w1, b1, w2, b2),
                               strict=True):
        assert ours.grad is not None and ours.grad.abs().sum() > 0
        torch.testing.assert_close(ours.grad, reference.grad, rtol=1e-5, atol=1e-6)
