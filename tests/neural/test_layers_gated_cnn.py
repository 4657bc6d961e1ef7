"""GatedCNNLayer (MambaOut): agreement with the block equations, channel split, sizes."""

import pytest
import torch
import torch.nn.functional as F

from probkit.neural.layers import GatedCNNLayer

from test_layers_common import causal_conv_loop, perturb_, randn, rms, step_all


def gated_cnn_loop(layer, x):
    h = rms(x, layer.norm.weight, layer.norm.eps)
    a = h @ layer.fc1.weight.T + layer.fc1.bias
    E, C = layer.hidden, layer.conv_channels
    g, ident, conv_in = a[..., :E], a[..., E:2 * E - C], a[..., 2 * E - C:]
    conv = causal_conv_loop(conv_in, layer.conv_weight, layer.conv_bias)
    value = torch.cat([ident, conv], dim=-1)
    return x + (F.gelu(g) * value) @ layer.fc2.weight.T + layer.fc2.bias


@pytest.mark.parametrize("conv_ratio, conv_width", [(1.0, 4), (0.5, 3), (2.0, 1)])
@pytest.mark.parametrize("L", [1, 9])
def test_forward_and_step_match_equations(conv_ratio, conv_width, L):
    torch.manual_seed(0)
    layer = perturb_(GatedCNNLayer(6, conv_ratio=conv_ratio, conv_width=conv_width).double())
    x = randn(2, L, 6)
    expected = gated_cnn_loop(layer, x)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-12)
    stepped, (conv_state,) = step_all(layer, x)
    torch.testing.assert_close(stepped, expected, rtol=1e-10, atol=1e-12)
    assert conv_state.shape == (2, layer.conv_channels, conv_width - 1)


def test_sizes_and_errors():
    layer = GatedCNNLayer(128)
    assert (layer.hidden, layer.conv_channels) == (341, 128)
    d, E, C, W = 128, 341, 128, 4
    expected = 2 * E * d + 2 * E + C * (W + 1) + E * d + d + d
    assert sum(p.numel() for p in layer.parameters()) == expected == 132_522
    with pytest.raises(ValueError, match="conv channels"):
        GatedCNNLayer(8, expansion=1.0, conv_ratio=1.5)
    with pytest.raises(ValueError, match="conv_width"):
        GatedCNNLayer(8, conv_width=0)
