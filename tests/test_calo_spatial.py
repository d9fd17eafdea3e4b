"""Per-layer convolutional streams of the calo critic (physgan.domains.calo.spatial)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from physgan.domains.base import ModelSpec
from physgan.domains.calo.geometry import calochallenge_geometry, calogan_geometry
from physgan.domains.calo.model import build_critic
from physgan.domains.calo.spatial import LayerConvStream, layer_coordinates, neighbour_table

CALOGAN = calogan_geometry()


def test_neighbour_table_known_answer_zero_and_circular_padding():
    t = neighbour_table((3, 2), circular_rows=False)  # cells 0 1 / 2 3 / 4 5
    assert t.shape == (6, 9)
    assert t[0].tolist() == [-1, -1, -1, -1, 0, 1, -1, 2, 3]
    assert t[3].tolist() == [0, 1, -1, 2, 3, -1, 4, 5, -1]
    c = neighbour_table((3, 2), circular_rows=True)  # the row axis (angle) wraps, the columns (radius) do not
    assert c[0].tolist() == [-1, 4, 5, -1, 0, 1, -1, 2, 3]
    assert c[5].tolist() == [2, 3, -1, 4, 5, -1, 0, 1, -1]


def _as_conv2d_check(geom, circular):
    torch.manual_seed(0)
    stream = LayerConvStream(geom, in_channels=2, channels=5, depth=1)
    x = torch.randn(4, geom.n_cells, 2, dtype=torch.float64)
    stream = stream.double()
    for g in stream.groups:  # the coordinate channels off: a plain 3 x 3 convolution with bias
        with torch.no_grad():
            g.conv.weight[:, 18:] = 0
    got = stream(x)
    assert got.shape == (4, geom.n_cells, 5)
    for g in stream.groups:
        w = g.conv.weight[:, :18].reshape(5, 9, 2).permute(0, 2, 1).reshape(5, 2, 3, 3)
        for i in g.layers:
            sl, shape = geom.layer_slice(i), geom.layers[i].shape
            img = x[:, sl].transpose(1, 2).reshape(4, 2, *shape)
            if circular:
                img = torch.cat([img[:, :, -1:], img, img[:, :, :1]], dim=2)
                img = F.pad(img, (1, 1, 0, 0))
            else:
                img = F.pad(img, (1, 1, 1, 1))
            ref = F.leaky_relu(F.conv2d(img, w, g.conv.bias), 0.2).flatten(2).transpose(1, 2)
            torch.testing.assert_close(got[:, sl], ref)


def test_stream_is_a_3x3_convolution_on_each_cartesian_layer_grid():
    _as_conv2d_check(CALOGAN, circular=False)


def test_stream_wraps_the_angle_of_cylindrical_layers():
    _as_conv2d_check(calochallenge_geometry("ds1-photons"), circular=True)


def test_coordinates_come_from_the_geometry():
    c = layer_coordinates(CALOGAN, 1)  # 12 x 12 cells of 40 mm: x, y in (-1, 1), r / max r in (0, 1]
    assert c.shape == (144, 3)
    assert np.isclose(np.abs(c[:, :2]).max(), 1.0) and np.isclose(c[:, 2].max(), 1.0) and (c[:, 2] > 0).all()
    np.testing.assert_allclose(c[:, 0], CALOGAN.layers[1].x_mm / np.abs(CALOGAN.layers[1].x_mm).max())


def test_layers_of_one_shape_share_a_stack_and_pooling_is_per_layer():
    ds2 = calochallenge_geometry("ds2")
    stream = LayerConvStream(ds2, 1, 3)
    assert len(stream.groups) == 1 and len(stream.groups[0].layers) == ds2.n_layers
    assert len(LayerConvStream(CALOGAN, 1, 3).groups) == 3
    x = torch.zeros(2, ds2.n_cells, 1)
    x[1, ds2.layer_slice(7)] = 1.0  # only layer 7 of shower 1 differs
    p = stream.pooled(x).reshape(2, ds2.n_layers, 3)
    diff = (p[0] - p[1]).abs().sum(dim=1)
    assert diff[7] > 1e-3 and int((diff > 1e-6).sum()) == 1  # (batch rows round differently at ~1e-9)


@pytest.mark.parametrize(("option", "channels", "branch", "weight"), [
    ("critic_spatial", 4, "spatial", lambda d: d.spatial.groups[0].conv.weight),
    ("critic_layer_stream", 5, "layer_stream", lambda d: d.layer_stream.conv1.weight),  # along the layers
], ids=["spatial", "layer-stream"])
@pytest.mark.parametrize("geom", [CALOGAN, calochallenge_geometry("ds1-photons"), calochallenge_geometry("ds2")],
                         ids=["calogan", "ds1", "ds2"])
def test_critic_branch_double_backward(geom, option, channels, branch, weight):
    spec = ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8, width=16, depth=2,
                     embed_dim=8, options={option: channels}, attrs=geom.to_attrs())
    torch.manual_seed(0)
    d = build_critic(spec)
    y = (torch.rand(6, geom.n_features) * 2 - 1).requires_grad_(True)
    s = d(y, torch.randn(6, 1))
    assert s.shape == (6,)
    (g,) = torch.autograd.grad(s.sum(), y, create_graph=True)
    (g.norm(dim=1) ** 2).mean().backward()
    w = weight(d)
    assert w.grad is not None and w.grad.abs().sum() > 0  # the penalty's double backward reaches the branch
    d0 = build_critic(ModelSpec(**{**spec.__dict__, "options": {}}))
    assert getattr(d0, branch) is None and sum(p.numel() for p in d.parameters()) > sum(p.numel() for p in d0.parameters())


def _gspec(geom, **options):
    return ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8, width=16, depth=2,
                     embed_dim=8, options={"cell_noise": True, "noise_head": "layer", "occupancy": True, **options},
                     attrs=geom.to_attrs())


@pytest.mark.parametrize("geom", [CALOGAN, calochallenge_geometry("ds1-photons")], ids=["calogan", "ds1"])
def test_pattern_conv_starts_as_the_plain_generator_and_learns(geom):
    from physgan.domains.calo.model import build_generator, layer_groups

    torch.manual_seed(3)
    g0 = build_generator(_gspec(geom))
    torch.manual_seed(3)
    g1 = build_generator(_gspec(geom, pattern_conv=4))
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(8, *g1.latent_shape(), generator=gen)
    c = torch.randn(8, 1, generator=gen)
    y1 = g1(z, c)
    torch.testing.assert_close(y1, g0(z, c))  # the stream's output layer starts at zero
    y1.sum().backward()
    out_w = [grp.out.weight.grad for grp in g1.pattern_conv.groups]
    assert all(w is not None and w.abs().sum() > 0 for w in out_w)
    with torch.no_grad():  # once the stream acts, the pattern changes but every layer keeps its energy
        for grp in g1.pattern_conv.groups:
            grp.out.weight.normal_(0, 1.0)
        out = g1.physics(z, c)
    assert not torch.allclose(out["u"], g0.physics(z, c)["u"])
    for k, idx in enumerate(layer_groups(geom)):
        torch.testing.assert_close(out["u"][:, idx].sum(1), out["group_energy"][:, k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["calogan", "ds1-photons", "ds2"])
def test_groups_go_back_to_flat_order(name):
    from physgan.domains.calo.model import build_generator, layer_groups

    geom = CALOGAN if name == "calogan" else calochallenge_geometry(name)
    g = build_generator(_gspec(geom))
    groups = layer_groups(geom)
    flat = torch.arange(geom.n_features, dtype=torch.float32)[None]
    got = g._to_flat([flat[:, idx] for idx in groups])
    torch.testing.assert_close(got, flat)
