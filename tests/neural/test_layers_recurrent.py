"""GRU / LSTM layers: the residual block around torch's RNNs, hidden sizes, state layout."""

import torch

from probkit.neural.layers import GRULayer, LSTMLayer

from test_layers_common import perturb_, randn, rms, step_all


def test_gru_layer_is_residual_projection_of_torch_gru():
    torch.manual_seed(0)
    layer = perturb_(GRULayer(6, hidden_size=5).double())
    x = randn(2, 7, 6)
    h, _ = layer.rnn(rms(x, layer.norm.weight, layer.norm.eps))
    torch.testing.assert_close(layer(x), x + h @ layer.proj.weight.T + layer.proj.bias)
    stepped, (h_last,) = step_all(layer, x)
    torch.testing.assert_close(stepped, layer(x), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_last, h[:, -1], rtol=1e-10, atol=1e-12)


def test_lstm_layer_state_and_counts():
    torch.manual_seed(0)
    layer = perturb_(LSTMLayer(6, hidden_size=3).double())
    x = randn(2, 4, 6)
    stepped, (h, c) = step_all(layer, x)
    torch.testing.assert_close(stepped, layer(x), rtol=1e-10, atol=1e-12)
    assert h.shape == c.shape == (2, 3)
    d = 128
    assert sum(p.numel() for p in GRULayer(d).parameters()) == 7 * d * d + 8 * d
    assert sum(p.numel() for p in LSTMLayer(d).parameters()) == 9 * d * d + 10 * d
