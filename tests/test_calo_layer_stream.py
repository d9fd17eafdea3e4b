"""The calo critic's stream along the layers (physgan.domains.calo.layer_stream, option critic_layer_stream); its
gradient-penalty double backward is checked beside the spatial branch's in test_calo_spatial.py."""

from __future__ import annotations

import pytest
import torch

from physgan.domains.base import ModelSpec
from physgan.domains.calo.geometry import calochallenge_geometry, calogan_geometry
from physgan.domains.calo.layer_stream import LayerSequenceStream, axis_slots
from physgan.domains.calo.model import build_critic
from physgan.domains.calo.transform import lateral_moments
from physgan.errors import ConfigError

CALOGAN = calogan_geometry()


def test_axis_slots_put_each_layer_s_columns_under_x_y_r():
    _, cols = lateral_moments(CALOGAN)  # x, y per layer
    assert axis_slots(CALOGAN, cols).tolist() == [[0, 1], [2, 3], [4, 5]]
    ds1 = calochallenge_geometry("ds1-photons")
    _, cols = lateral_moments(ds1)
    table = axis_slots(ds1, cols)
    assert table.shape == (ds1.n_layers, 3)
    for i, lay in enumerate(ds1.layers):
        own = [j for j, owner in enumerate(cols) if owner == i]
        if lay.n_alpha > 1:
            assert table[i].tolist() == own  # x, y, r
        else:  # r only: x and y point at the zero column
            assert table[i].tolist() == [len(cols), len(cols), own[0]]
    assert any(lay.n_alpha == 1 for lay in ds1.layers) and any(lay.n_alpha > 1 for lay in ds1.layers)


def test_one_set_of_weights_reads_every_layer_with_its_neighbours():
    geom = calochallenge_geometry("ds2")
    _, cols = lateral_moments(geom)
    torch.manual_seed(0)
    stream = LayerSequenceStream(geom, cols, 6)
    b, n, m = 3, geom.n_layers, len(cols)
    args = [torch.randn(b, n), torch.rand(b, n), torch.randn(b, m), torch.rand(b, m), torch.randn(b)]
    out = stream(*args)
    assert out.shape == (b, 6)
    # every centre column of every layer reaches the output (one set of weights reads them all)
    x = args[2].clone().requires_grad_(True)
    stream(args[0], args[1], x, args[3], args[4]).sum().backward()
    moved = x.grad.abs().sum(dim=0)
    assert (moved > 0).all()
    # the kernel-3 step: layer 20's output reads layers 19, 20 and 21 only
    probe = torch.zeros(1, n, 6, requires_grad=True)
    stream._neighbours(probe)[0, 20].sum().backward()
    assert probe.grad[0].abs().sum(dim=1).nonzero().flatten().tolist() == [19, 20, 21]
    with pytest.raises(ValueError, match="channels"):
        LayerSequenceStream(geom, cols, 0)


def test_negative_channels_are_refused():
    geom = calochallenge_geometry("ds2")
    spec = ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8, width=16, depth=2,
                     embed_dim=8, options={"critic_layer_stream": -1}, attrs=geom.to_attrs())
    with pytest.raises(ConfigError, match="critic_layer_stream"):
        build_critic(spec)
