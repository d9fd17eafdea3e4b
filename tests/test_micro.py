"""The micro domain: porespy generators, layout, TIFF import, transform, SliceGAN models, metrics, plots."""

from __future__ import annotations

import argparse
import zipfile

import h5py
import numpy as np
import pytest
import torch

from physgan.domains import ModelSpec, get_domain
from physgan.domains.micro import importer
from physgan.domains.micro.make import add_make_arguments, make
from physgan.domains.micro.metrics import SCORE_WEIGHTS, physics_metrics, sample_features, score
from physgan.domains.micro.model import (
    MicroGenerator,
    SliceCritic3d,
    build_critic,
    build_generator,
    slicegan_rules_ok,
    tap_count_map,
)
from physgan.domains.micro.transform import OneHotTransform
from physgan.errors import ConfigError, DataError, OutputExistsError
from physgan.io.hdf5 import open_source, read_all, write_samples
from physgan.sim.micro import MicroSpec, generate_micro, iter_micro, sample_conditions

# -- generators ---------------------------------------------------------------------------------------------------------


def test_blobs_conditions_reproduce_and_porosity_is_achieved():
    lab1, c1, names = generate_micro("blobs", 5, (32, 32), porosity=(0.3, 0.6), blobiness=(1, 2), seed=7)
    lab2, c2, _ = generate_micro("blobs", 5, (32, 32), porosity=(0.3, 0.6), blobiness=(1, 2), seed=7)
    lab3, _, _ = generate_micro("blobs", 5, (32, 32), porosity=(0.3, 0.6), blobiness=(1, 2), seed=8)
    assert names == ["porosity", "blobiness"]
    assert lab1.dtype == np.uint8 and lab1.shape == (5, 32, 32) and set(np.unique(lab1)) <= {0, 1}
    np.testing.assert_array_equal(lab1, lab2)
    np.testing.assert_array_equal(c1, c2)
    assert not np.array_equal(lab1, lab3)
    # column 0 is the achieved pore fraction (label 0) ...
    np.testing.assert_allclose(c1[:, 0], (lab1 == 0).reshape(5, -1).mean(1), atol=1e-6)
    # ... which for blobs equals the target drawn from the same seed
    target, _ = sample_conditions(MicroSpec("blobs", (32, 32), (0.3, 0.6), (1, 2)), 5, np.random.default_rng(7))
    np.testing.assert_allclose(c1[:, 0], target[:, 0], atol=1.5 / 1024)
    np.testing.assert_allclose(c1[:, 1], target[:, 1], rtol=1e-6)
    assert np.all((c1[:, 1] >= 1) & (c1[:, 1] <= 2))


def test_overlapping_spheres_conditions():
    spec = MicroSpec("overlapping-spheres", (24, 24, 24), porosity=(0.4, 0.7), radius=(2, 4))
    ((lab, cond),) = list(iter_micro(spec, 3, seed=1))
    target, _ = sample_conditions(spec, 3, np.random.default_rng(1))
    assert lab.shape == (3, 24, 24, 24)
    np.testing.assert_allclose(cond[:, 0], target[:, 0], atol=0.03)  # porespy meets porosity to ~0.01
    assert set(cond[:, 1].tolist()) <= {2.0, 3.0, 4.0}


def test_bad_generator_options():
    with pytest.raises(ConfigError):
        MicroSpec("voronoi")
    with pytest.raises(ConfigError):
        MicroSpec("blobs", porosity=(0.6, 0.3))
    with pytest.raises(ConfigError):
        MicroSpec("blobs", shape=(64,))


def _make_args(tmp_path, **kw):
    p = argparse.ArgumentParser()
    add_make_arguments(p)
    argv = ["--out", str(tmp_path / "m.h5"), "--shape", "16,16", "--n", "6", "--seed", "3", "--porosity", "0.3:0.5"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return vars(p.parse_args(argv))  # the keyword arguments of the domain's make / import_


def test_make_writes_micro_layout(tmp_path):
    out = make(**_make_args(tmp_path, block=4))
    src = open_source(out)
    assert src.layout.name == "micro" and len(src) == 6 and src.sample_shape == (16, 16)
    assert src.condition_names == ["porosity", "blobiness"]
    a = src.header.attrs
    assert a["domain"] == "micro" and a["n_phases"] == 2 and list(a["phase_values"]) == [0, 1] and a["seed"] == 3
    assert list(a["condition_names"]) == ["porosity", "blobiness"]  # physics_metrics finds the porosity column by name
    assert get_domain("micro").detect(src.header)
    x, c = read_all(src)
    assert x.dtype == np.float32 and set(np.unique(x)) <= {0.0, 1.0}
    with h5py.File(out) as f:
        assert f["labels"].dtype == np.uint8
    np.testing.assert_allclose(c[:, 0], (x == 0).reshape(6, -1).mean(1), atol=1e-6)
    with pytest.raises(OutputExistsError):
        make(**_make_args(tmp_path))
    make(**_make_args(tmp_path, overwrite=True, seed=4))


# -- layout -------------------------------------------------------------------------------------------------------------


def test_layout_validation(tmp_path):
    good = tmp_path / "g.h5"
    write_samples(good, np.zeros((2, 4, 4)), np.zeros((2, 0)), [], layout="micro", attrs={"n_phases": 2}, dtype="uint8")
    assert open_source(good).layout.name == "micro"
    bad = tmp_path / "b.h5"
    with h5py.File(bad, "w") as f:
        f["labels"] = np.array([[[0, 1], [3, 1]]], np.uint8)
        f.attrs["n_phases"] = 2
    with pytest.raises(DataError, match="label 3"):
        read_all(bad)
    missing = tmp_path / "m.h5"
    with h5py.File(missing, "w") as f:
        f["labels"] = np.zeros((1, 4, 4), np.uint8)
    with pytest.raises(DataError, match="n_phases"):
        open_source(missing)
    floats = tmp_path / "f.h5"
    with h5py.File(floats, "w") as f:
        f["labels"] = np.zeros((1, 4, 4), np.float32)
        f.attrs["n_phases"] = 2
    with pytest.raises(DataError, match="integers"):
        open_source(floats)


# -- import -------------------------------------------------------------------------------------------------------------


def _import_args(path, out, **kw):
    p = argparse.ArgumentParser()
    importer.add_import_arguments(p)
    argv = [str(path), "--out", str(out)]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return vars(p.parse_args(argv))  # the keyword arguments of the domain's make / import_


def test_import_tiff_and_zip_with_phase_detection(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    vol = np.full((20, 24, 28), 255, np.uint8)
    vol[:, :, :7] = 0  # a quarter pore
    tif = tmp_path / "v.tif"
    tifffile.imwrite(tif, vol)
    out = importer.import_(**_import_args(tif, tmp_path / "v.h5", crop=8, stride=8, conditions="porosity", phase_names="pore,grain"))
    src = open_source(out)
    assert len(src) == 2 * 3 * 3 and src.sample_shape == (8, 8, 8)
    assert list(src.header.attrs["phase_values"]) == [0, 255] and list(src.header.attrs["phase_names"]) == ["pore", "grain"]
    x, c = read_all(src)
    np.testing.assert_array_equal(x[0], (vol[:8, :8, :8] == 255).astype(np.float32))  # 0 -> 0, 255 -> 1
    np.testing.assert_allclose(c[:, 0], (x == 0).reshape(len(x), -1).mean(1))
    assert c[0, 0] == pytest.approx(7 / 8) and c[-1, 0] == 0.0  # first crop spans x 0..7, last x 16..23
    # the same volume inside a zip, 2-D crops of every 10th slice with all phase fractions
    zp = tmp_path / "v.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.write(tif, "inner/v.tif")
    out2 = importer.import_(**_import_args(zp, tmp_path / "z.h5", crop=12, stride=10, dim=2, conditions="fractions"))
    src2 = open_source(out2)
    assert src2.sample_shape == (12, 12) and len(src2) == 2 * 2 * 2
    assert src2.condition_names == ["fraction_0", "fraction_1"]
    _, c2 = read_all(src2)
    np.testing.assert_allclose(c2.sum(1), 1.0, atol=1e-6)
    # not segmented / too small / too many files
    grey = tmp_path / "g.tif"
    tifffile.imwrite(grey, np.random.default_rng(0).random((4, 16, 16)).astype(np.float32), photometric="minisblack")
    with pytest.raises(DataError, match="not segmented"):
        importer.import_(**_import_args(grey, tmp_path / "g.h5", crop=8))
    with pytest.raises(DataError, match="smaller than"):
        importer.import_(**_import_args(tif, tmp_path / "s.h5", crop=32))
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as zf:
        zf.write(tif, "a.tif")
        zf.write(tif, "b.tif")
    with pytest.raises(DataError, match="exactly one"):
        importer.read_image(tmp_path / "two.zip")


@pytest.mark.shared
def test_import_real_tiffs(shared_data, tmp_path):
    micro = shared_data / "micro"
    out = importer.import_(**_import_args(micro / "nmc_cathode_128.tif", tmp_path / "nmc.h5", crop=64, stride=64, conditions="porosity"))
    src = open_source(out)
    assert len(src) == 8 and src.header.attrs["n_phases"] == 2
    x, c = read_all(src)
    assert abs((x == 0).mean() - 0.58) < 0.02  # README: phase 0 fraction 0.58
    out = importer.import_(
        **_import_args(micro / "sofc_anode_2d_1024.tif", tmp_path / "sofc.h5", crop=128, stride=256, dim=2, conditions="fractions")
    )
    src = open_source(out)
    assert src.header.attrs["n_phases"] == 3 and list(src.header.attrs["phase_values"]) == [0, 1, 2] and len(src) == 16
    labels, values = importer.detect_phases(importer.read_image(micro / "berea_sandstone_400.zip"))
    assert values == [0, 255] and labels.shape == (400, 400, 400)
    assert (labels == 0).mean() == pytest.approx(0.1965, abs=5e-4)


# -- transform ----------------------------------------------------------------------------------------------------------


def test_onehot_round_trip():
    x = np.random.default_rng(0).integers(0, 3, size=(4, 5, 6, 7)).astype(np.float32)
    t = OneHotTransform().fit(x, None, {"n_phases": 3})
    y = t.forward(torch.from_numpy(x))
    assert y.shape == (4, 3, 5, 6, 7) and t.model_shape((5, 6, 7)) == (3, 5, 6, 7)
    torch.testing.assert_close(y.sum(1), torch.ones(4, 5, 6, 7))
    np.testing.assert_array_equal(t.inverse(y).numpy(), x)
    t2 = OneHotTransform().load_state_dict(t.state_dict())
    np.testing.assert_array_equal(t2.inverse(t2.forward(torch.from_numpy(x))).numpy(), x)
    with pytest.raises(DataError):
        OneHotTransform().fit(x, None, {"n_phases": 2})


# -- models -------------------------------------------------------------------------------------------------------------


def _spec(shape, n_cond=2, **options):
    return ModelSpec(sample_shape=shape, n_cond=n_cond, condition_names=["a", "b"][:n_cond], z_dim=4, width=4, embed_dim=8, options=options)


@pytest.mark.parametrize("shape", [(2, 32, 32), (3, 16, 16, 16), (2, 24, 24)])
def test_generator_shapes_and_scale(shape):
    torch.manual_seed(0)
    g = build_generator(_spec(shape))
    c = torch.randn(2, 2)
    y = g(torch.randn(2, *g.latent_shape()), c)
    assert y.shape == (2, *shape)
    torch.testing.assert_close(y.sum(1), torch.ones(2, *shape[1:]))  # softmax over phases
    y2 = g(torch.randn(1, *g.latent_shape(2)), c[:1])
    assert y2.shape == (1, shape[0], *[2 * s for s in shape[1:]])
    with pytest.raises(ConfigError):
        g.latent_shape(1.5)


def test_scale_blur_is_a_gaussian_filter_whose_width_follows_the_condition():
    """Option ``scale_blur``: the output logits are Gaussian-filtered (scipy's ``gaussian_filter``, edges replicated)
    with a width per sample from the condition embedding; the width's parameters get a gradient."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    h = torch.as_tensor(rng.normal(size=(2, 2, 10, 12, 14)))
    sigma = torch.tensor([1.2, 0.8], dtype=torch.float64)
    out = MicroGenerator.blur(h, sigma).numpy()
    for i in range(2):
        s = float(sigma[i])
        want = gaussian_filter(h[i].numpy(), sigma=(0, s, s, s), mode="nearest", truncate=4 / s)
        np.testing.assert_allclose(out[i], want, atol=1e-12)
    torch.testing.assert_close(MicroGenerator.blur(h, torch.tensor([1e-3, 1e-3])), h)  # far below a voxel: identity
    torch.manual_seed(0)
    g = build_generator(_spec((2, 32, 32), scale_blur=True))
    assert build_generator(_spec((2, 32, 32))).blur_width is None
    with torch.no_grad():
        g.blur_width.weight.zero_()
        g.blur_width.weight[0, 0] = 1.0  # width = 0.7 exp(e_0(c)): two conditions, two widths
    z = torch.randn(1, *g.latent_shape()).repeat(2, 1, 1, 1)
    c = torch.randn(2, 2)
    e = g.embed(c)
    y = g(z, c)
    rough = [float((y[i, 0, 1:] - y[i, 0, :-1]).abs().mean().detach()) for i in range(2)]
    wider = int(torch.argmax(e[:, 0]))
    assert rough[wider] < rough[1 - wider]  # the same latent, blurred more: a smoother texture
    (y[:, 0] ** 2).mean().backward()
    assert g.blur_width.weight.grad.abs().sum() > 0 and g.blur_width.bias.grad.abs() > 0


def test_slicegan_rules_and_uniform_coverage():
    g = build_generator(_spec((2, 64, 64, 64)))
    assert g.n_layers == 5 and g.latent_shape() == (4, 4, 4, 4)  # SliceGAN: z (., 4, 4, 4) -> 64^3
    assert all(slicegan_rules_ok(*geo) for geo in g.geometry)
    assert not slicegan_rules_ok(4, 2, 1) and not slicegan_rules_ok(3, 2, 1) and not slicegan_rules_ok(2, 2, 0)
    for scale in (1, 2):
        taps = tap_count_map(g.geometry, tuple(g.latent_shape(scale)[1:]))
        assert taps.shape == (64 * scale,) * 3
        assert torch.all(taps == taps.flatten()[0])  # every voxel gets the same number of kernel taps
    # a DCGAN-style layer (k=4, s=2, p=1) breaks the rule and starves the borders
    dcgan = tap_count_map([(4, 2, 1)] * 3, (4, 4))
    assert dcgan[0, 0] < dcgan[10, 10]
    with pytest.raises(ConfigError):
        build_generator(_spec((2, 33, 33)))


def test_untrained_generator_has_flat_phase_profile():
    torch.manual_seed(1)
    g = build_generator(_spec((2, 32, 32), n_cond=0))
    with torch.no_grad():
        y = g(torch.randn(64, *g.latent_shape(2)), torch.zeros(64, 0))[:, 0]  # (64, 64, 64)
    prof = y.mean(dim=(0, 2))  # mean phase-0 probability per row, 64 rows
    # G is equivariant to shifts by 2^L = 32 output voxels (one latent cell): with uniform tap
    # coverage the block touching the edge (rows 0..31) is statistically the interior block (32..63)
    assert g.n_layers == 5
    assert torch.max(torch.abs(prof[:32] - prof[32:])) < 0.02


def test_critic_volume_scores_a_3d_window_silent_at_start_and_does_not_apply_to_2d():
    """``critic_volume``: a small 3-D critic on one random window per call, added to the slice score. Its head starts
    at zero (the critic's score equals the slice critics' alone), it learns (gradients reach it and change its
    output), the window comes from the critic's generator, and the WGAN-GP double backward works."""
    from physgan.domains.micro.model import VolumeCritic3d

    torch.manual_seed(0)
    plain = build_critic(_spec((2, 20, 20, 20), n_cond=1))
    torch.manual_seed(0)
    d = build_critic(_spec((2, 20, 20, 20), n_cond=1, critic_volume=16))
    assert isinstance(d.volume_critic, VolumeCritic3d) and d.volume_side == 16
    x, c = torch.rand(3, 2, 20, 20, 20), torch.randn(3, 1)
    plain.generator, d.generator = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(d(x, c), plain(x, c))
    d.volume_critic(d.window(x, 16), c).sum().backward()
    assert d.volume_critic.head.psi.weight.grad.abs().sum() > 0
    with torch.no_grad():
        d.volume_critic.head.psi.weight.fill_(0.1)
    out = d(x, c)
    plain.generator = torch.Generator().manual_seed(5)
    d.generator = torch.Generator().manual_seed(5)
    assert not torch.allclose(d(x, c), plain(x, c))
    # the window: drawn with the critic's generator after the slices, one place for the batch
    g = torch.Generator().manual_seed(9)
    d.generator = torch.Generator().manual_seed(9)
    w = d.window(x, 16)
    o = [int(torch.randint(0, 5, (1,), generator=g)) for _ in range(3)]
    torch.testing.assert_close(w, x[:, :, o[0] : o[0] + 16, o[1] : o[1] + 16, o[2] : o[2] + 16])
    assert out.shape == (3,)
    _double_backward(d, torch.rand(2, 2, 20, 20, 20), torch.randn(2, 1))
    assert build_critic(_spec((2, 12, 12, 12), critic_volume=32)).volume_side == 12  # never larger than the volume
    # a 2-D image has no volume: the option does not apply (the default preset, which 2-D files also get, sets it)
    flat = build_critic(_spec((2, 16, 16), critic_volume=16))
    assert not any(isinstance(m, VolumeCritic3d) for m in flat.modules())


def test_critic_euler_counts_a_volume_s_loops_and_does_not_apply_to_2d():
    """``critic_euler``: the volume branch reads the Euler density of the pore phase (26-connectivity) in a window.

    Inside the window it is :func:`~physgan.nn.topology.soft_euler_density`, whose 0/1 count is scikit-image's
    Euler number where the window's outer layer is empty (a block chi 1, a hollow block with a cavity chi 2, a ring
    chi 0). The soft count has gradients at every voxel, and the critic still double-backwards (the WGAN-GP penalty).
    """
    from skimage.measure import euler_number

    from physgan.domains.micro.model import EULER_VOXELS
    from physgan.nn.topology import soft_euler_density

    d = build_critic(_spec((2, 12, 12, 12), n_cond=1, critic_euler=True))
    pore = np.zeros((3, 12, 12, 12), bool)
    pore[0, 2:10, 2:10, 2:10] = True  # block
    pore[1, 2:10, 2:10, 2:10] = True
    pore[1, 4:8, 4:8, 4:8] = False  # hollow: a cavity inside
    pore[2, 2:10, 2:10, 5:7] = True
    pore[2, 4:8, 4:8, 5:7] = False  # a ring: one loop
    x = torch.as_tensor(np.stack([pore, ~pore], axis=1), dtype=torch.float32)
    got = d.volume_euler(x)[:, 0].numpy() / EULER_VOXELS
    # with an empty outer layer the interior cells are all the cells: chi = sum_k (-1)^k n_k, n_k = density_k * sites_k
    ind = torch.as_tensor(pore, dtype=torch.float64)
    counts = []
    for v in ind:
        n = 0.0
        for mask in range(8):
            ext = [(mask >> a) & 1 for a in range(3)]
            cell = 1 - v
            for a, e in enumerate(ext):
                if not e:
                    cell = cell[(slice(None),) * a + (slice(1, None),)] * cell[(slice(None),) * a + (slice(None, -1),)]
            n += (-1) ** sum(ext) * float((1 - cell).sum())
        counts.append(n)
    assert counts == [euler_number(v, connectivity=3) for v in pore] == [1, 2, 0]
    np.testing.assert_allclose(got, soft_euler_density(x[:, 0].double(), 3).numpy(), atol=1e-6)  # float32 sums
    # a larger volume is read in a 32^3 window at a place drawn with the critic's generator
    big = np.random.default_rng(1).random((1, 40, 40, 40)) < 0.7
    xb = torch.as_tensor(np.stack([big, ~big], axis=1), dtype=torch.float32)
    d.generator = torch.Generator().manual_seed(3)
    got = d.volume_euler(xb)[0, 0].item() / EULER_VOXELS
    g = torch.Generator().manual_seed(3)
    o = [int(torch.randint(0, 9, (1,), generator=g)) for _ in range(3)]
    window = torch.as_tensor(big[0, o[0] : o[0] + 32, o[1] : o[1] + 32, o[2] : o[2] + 32], dtype=torch.float64)
    assert got == pytest.approx(soft_euler_density(window, 3).item(), abs=1e-6)
    soft = x.clone().requires_grad_(True)
    d.volume_euler(0.8 * soft + 0.1).sum().backward()
    assert (soft.grad[:, 0] != 0).float().mean() > 0.9
    _double_backward(d, torch.rand(2, 2, 12, 12, 12), torch.randn(2, 1))
    assert type(build_critic(_spec((2, 16, 16), critic_euler=True))) is type(build_critic(_spec((2, 16, 16))))


def _double_backward(d, x, c):
    x = x.clone().requires_grad_(True)
    out = d(x, c)
    assert out.shape == (x.shape[0],)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    gp.backward()
    grads = {n: p.grad for n, p in d.named_parameters()}
    # every weight the input gradient depends on gets a second-order gradient (biases of the
    # last layers do not enter d out / d x, so theirs may be None)
    convs = [n for n in grads if n.endswith("weight") and ".features." in f".{n}"]
    assert convs and all(grads[n] is not None and grads[n].abs().sum() > 0 for n in convs)
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)


def test_critics_double_backward_and_slicing():
    torch.manual_seed(0)
    c = torch.randn(2, 2)
    d2 = build_critic(_spec((2, 32, 32)))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d2.modules())
    _double_backward(d2, torch.rand(2, 2, 32, 32), c)
    d3 = build_critic(_spec((3, 16, 16, 16)))
    assert isinstance(d3, SliceCritic3d) and len(d3.critics) == 1
    _double_backward(d3, torch.rand(2, 3, 16, 16, 16), c)
    aniso = build_critic(_spec((3, 16, 16, 16), isotropic=False))
    assert len(aniso.critics) == 3
    # slicing is an exact re-indexing, and the volume score is the mean 2-D score over all 3 x 16 slices
    x = torch.rand(2, 3, 16, 16, 16)
    sl = d3.slices(x, 1)
    torch.testing.assert_close(sl[16 + 5], x[1, :, :, 5, :])
    with torch.no_grad():
        manual = torch.stack(
            [
                torch.stack([d3.critics[0](x[b : b + 1].select(a + 2, i), c[b : b + 1])[0] for a in range(3) for i in range(16)]).mean()
                for b in range(2)
            ]
        )
        torch.testing.assert_close(d3(x, c), manual, rtol=1e-4, atol=1e-5)


# -- metrics, domain, plots ---------------------------------------------------------------------------------------------


def test_physics_metrics_and_score():
    real, cr, names = generate_micro("blobs", 6, (32, 32), porosity=(0.4, 0.5), blobiness=(1, 1.5), seed=0)
    same, cs, _ = generate_micro("blobs", 6, (32, 32), porosity=(0.4, 0.5), blobiness=(1, 1.5), seed=1)
    other, co, _ = generate_micro("overlapping_spheres", 6, (32, 32), porosity=(0.7, 0.8), radius=(2, 2), seed=0)
    attrs = {"n_phases": 2, "condition_names": names}
    m0 = physics_metrics((real, cr), (real, cr), attrs)
    assert m0["phase_fraction_err"] == 0 and m0["s2_max_abs_err"] == 0 and m0["chord_separation_power"] == 0
    assert m0["condition_fraction_mae"] < 1e-6 and m0["euler_rel_diff"] == 0 and score(m0) == 0
    m1 = physics_metrics((real, cr), (same, cs), attrs)
    m2 = physics_metrics((real, cr), (other, co), attrs)
    assert 0 < score(m1) < score(m2)
    assert m2["phase_fraction_err"] > 0.2 and m2["s2_max_abs_err"] > m1["s2_max_abs_err"]
    # fakes that miss the porosity asked for by their condition
    shifted = cs.copy()
    shifted[:, 0] += 0.1
    assert physics_metrics((real, cr), (same, shifted), attrs)["condition_fraction_mae"] == pytest.approx(0.1, abs=1e-6)
    f = sample_features(real, cr, attrs)
    np.testing.assert_allclose(f["fraction_0"], cr[:, 0], atol=1e-6)
    assert set(f) >= {"ssa", "euler_density", "mean_chord_axis0", "mean_chord_axis1", "s2_r1"}


def test_score_sees_a_cut_pore_network_in_volumes_only():
    """Volumes with the same pore tubes, one set cut by a solid plane normal to each axis: the spanning fraction
    falls to 0 and the score rises by its weight; images (2-D) carry no percolation term."""
    v = np.ones((4, 16, 16, 16), np.int16)  # solid 1, pore 0
    for a in range(3):  # pore tubes along every axis
        idx = [slice(None)] * 4
        idx[1 + (a + 1) % 3] = idx[1 + (a + 2) % 3] = slice(6, 10)  # the three meet in the centre
        v[tuple(idx)] = 0
    cut = v.copy()
    cut[:, 8], cut[:, :, 8], cut[:, :, :, 8] = 1, 1, 1
    attrs = {"n_phases": 2}
    m0, m1 = physics_metrics((v, None), (v, None), attrs), physics_metrics((v, None), (cut, None), attrs)
    assert m0["percolating_fraction_real"] == 1.0 and m0["percolation_err"] == 0
    assert m1["percolating_fraction_fake"] == 0.0 and m1["percolation_err"] == 1.0
    assert score(m1) - score(m0) >= SCORE_WEIGHTS["percolation_err"]
    assert "percolation_err" not in physics_metrics((v[:, 0], None), (cut[:, 0], None), attrs)


def test_score_sees_an_anisotropy_or_a_diagonal_texture_that_the_radial_s2_averages_away():
    """Stripes along axis 1 and the same stripes along axis 0 have one radial S2 but opposite per-axis S2, and bands
    along one diagonal against the other differ only along the diagonals: ``s2_axis_max_abs_err``,
    ``s2_diagonal_max_abs_err`` and hence the validation score tell them apart."""
    rng = np.random.default_rng(3)
    n, side = 8, 32
    # random-width bands: phase 0 where a 1-D telegraph signal along axis 0 is 0
    bands = np.cumsum(rng.random((n, side)) < 0.2, axis=1) % 2
    along_1 = np.repeat(bands[:, :, None], side, axis=2).astype(np.int64)  # constant along axis 1 (the last)
    along_0 = np.swapaxes(along_1, 1, 2).copy()
    attrs = {"n_phases": 2}
    same = physics_metrics((along_1, None), (along_1, None), attrs)
    turned = physics_metrics((along_1, None), (along_0, None), attrs)
    assert same["s2_axis_max_abs_err"] == 0
    assert turned["s2_max_abs_err"] < 0.02  # radially the same material
    assert turned["s2_axis_max_abs_err"] > 0.1  # along an axis, S2 stays at phi for one and decays for the other
    assert score(turned) - score(same) >= turned["s2_axis_max_abs_err"]
    # bands along one diagonal against the same bands along the other: axes and radius agree, the diagonals do not
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    wide = np.cumsum(rng.random((n, 2 * side)) < 0.2, axis=1) % 2
    plus = np.stack([w[i + j] for w in wide]).astype(np.int64)  # constant along (1, -1)
    minus = np.stack([w[i - j + side] for w in wide]).astype(np.int64)  # constant along (1, 1)
    mirrored = physics_metrics((plus, None), (minus, None), attrs)
    assert mirrored["s2_axis_max_abs_err"] < 0.02 and mirrored["s2_max_abs_err"] < 0.02
    assert mirrored["s2_diagonal_max_abs_err"] > 0.1
    assert physics_metrics((plus, None), (plus, None), attrs)["s2_diagonal_max_abs_err"] == 0


def test_domain_record_is_complete():
    d = get_domain("micro")
    for name in (
        "make_transform",
        "build_generator",
        "build_critic",
        "features",
        "physics_metrics",
        "score",
        "plots",
        "add_make_arguments",
        "make",
        "add_import_arguments",
        "import_",
        "detect",
    ):
        assert callable(getattr(d, name)), name
    assert d.layouts == ["micro"] and "default" in d.presets and d.quickstart["make"]["generator"] == "blobs"
    assert d.detect(type("H", (), {"attrs": {"domain": "micro"}})()) and not d.detect(type("H", (), {"attrs": {}})())


def test_plots_write_pngs(tmp_path):
    real, cr, names = generate_micro("blobs", 3, (16, 16, 16), seed=0)
    fake, cf, _ = generate_micro("blobs", 3, (16, 16, 16), seed=1)
    figs = get_domain("micro").plots((real, cr), (fake, cf), {"n_phases": 2, "tortuosity_samples": 1}, tmp_path / "fig")
    titles = [t for t, _ in figs]
    assert "Orthogonal slices (generated)" in titles and "Two-point correlation S2(r)" in titles and "Edge profiles" in titles
    for _, p in figs:
        assert p.exists() and p.read_bytes()[:4] == b"\x89PNG"


# -- anisotropy: S2 along each axis (issue 14, the separator) -----------------------------------------------------------


def test_axis_s2_sees_anisotropy_and_matches_direct_count():
    from physgan.domains.micro.metrics import axis_s2

    rng = np.random.default_rng(0)
    # stripes of period 4 along axis 2, random along axes 0 and 1 only through a per-sample phase shift
    x = np.zeros((3, 6, 8, 12), np.uint8)
    for i in range(3):
        x[i] = ((np.arange(12) + i) // 2 % 2)[None, None, :]
    r, s2 = axis_s2(x, phase=0, r_max=5)
    assert r.tolist() == list(range(6)) and s2.shape == (3, 6)
    assert np.allclose(s2[:, 0], 0.5)  # S2(0) is the phase fraction along every axis
    assert np.allclose(s2[0], 0.5) and np.allclose(s2[1], 0.5)  # constant along the stripes
    assert s2[2, 2] < 0.05 and s2[2, 4] > 0.45  # out of phase at 2, in phase at 4 across them
    # a random volume: the direct count of pairs at lag 3 along axis 1
    y = rng.integers(0, 2, size=(2, 5, 7, 9))
    _, s2y = axis_s2(y, phase=1, r_max=3)
    direct = np.mean((y[:, :, :-3, :] == 1) & (y[:, :, 3:, :] == 1))
    assert s2y[1, 3] == pytest.approx(direct)
    with pytest.raises(ValueError, match="r_max"):
        axis_s2(y, phase=1, r_max=5)


def test_volume_stride_gives_enough_crops():
    from bench.micro_benchmark import volume_stride

    for shape, crop, n in [((156, 75, 75), 32, 512), ((400, 400, 400), 64, 400), ((40, 40, 40), 32, 8)]:
        s = volume_stride(shape, crop, n)
        count = int(np.prod([(side - crop) // s + 1 for side in shape]))
        assert count >= n or s == 1
        if s < max(shape) - crop:  # the next stride gives too few
            assert int(np.prod([(side - crop) // (s + 1) + 1 for side in shape])) < n
    with pytest.raises(SystemExit, match="smaller than the crop"):
        volume_stride((20, 40, 40), 32, 4)


@pytest.mark.shared
def test_import_anisotropic_separator_keeps_its_axes(shared_data, tmp_path):
    from physgan.domains.micro.metrics import axis_s2

    src = shared_data / "micro" / "separator_anisotropic.tif"
    out = importer.import_(**_import_args(src, tmp_path / "sep.h5", crop=32, stride=40))
    x, _ = read_all(open_source(out))[:2]
    assert x.shape == (4 * 2 * 2, 32, 32, 32)  # (156, 75, 75) at stride 40: 4 x 2 x 2 crops, axes not permuted
    _, s2 = axis_s2(x, phase=0, r_max=4)
    # the separator is fine-grained along its last axis: S2 decays much faster there than along the others
    assert s2[2, 4] < s2[0, 4] - 0.1 and s2[2, 4] < s2[1, 4] - 0.1


def test_blobiness_control_metrics_follow_the_condition():
    real, cr, names = generate_micro("blobs", 48, (32, 32), porosity=(0.3, 0.5), blobiness=(0.3, 0.6), seed=0)
    other, co, _ = generate_micro("blobs", 48, (32, 32), porosity=(0.3, 0.5), blobiness=(0.3, 0.6), seed=1)
    attrs = {"n_phases": 2, "condition_names": names}
    same = physics_metrics((real, cr), (other, co), attrs)
    # fresh images with their own conditions: calibrated slope near 1, the same per-sample error as the reference
    assert 0.75 < same["blobiness_slope"] < 1.25 and same["blobiness_slope_real_est"] > 0.5
    assert same["blobiness_mae_fake"] < 2 * same["blobiness_mae_real"]
    # the same images with their blobiness labels shuffled: no response, larger error
    shuffled = co.copy()
    shuffled[:, 1] = np.random.default_rng(2).permutation(co[:, 1])
    wrong = physics_metrics((real, cr), (other, shuffled), attrs)
    assert abs(wrong["blobiness_slope"]) < 0.4 and wrong["blobiness_mae_fake"] > same["blobiness_mae_fake"]
    # the score (best-checkpoint choice) counts the excess error over the real images' own
    assert wrong["blobiness_mae_excess"] > 0.03 and same["blobiness_mae_excess"] < 0.01
    assert score(wrong) - score(same) == pytest.approx(wrong["blobiness_mae_excess"] - same["blobiness_mae_excess"])
    assert "blobiness_slope" not in physics_metrics((real, None), (other, None), attrs)


def test_direction_s2_tells_the_two_diagonals_apart():
    from physgan.domains.micro.metrics import direction_s2

    # lines along the (1, 1) diagonal of every slice normal to axis 0
    i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    x = np.broadcast_to(((i - j) % 4 == 0).astype(np.uint8)[None, None], (2, 3, 16, 16))
    along = direction_s2(x, 1, (0, 1, 1), 6)
    across = direction_s2(x, 1, (0, 1, -1), 6)
    assert np.allclose(along, 0.25, atol=0.015)  # a line stays a line along its own diagonal (up to the window)
    assert across[1] == 0 and across[2] > 0.2  # across: (i - j) changes by 2r, back on a line every 2 steps
    with pytest.raises(ValueError, match="r_max"):
        direction_s2(x, 1, (0, 2, 2), 8)


def test_orientation_s2_flags_a_diagonal_texture():
    from bench.micro_benchmark import orientation_s2

    rng = np.random.default_rng(0)
    iso = (rng.random((6, 12, 12, 12)) < 0.5).astype(np.uint8)
    i, j = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    diag = np.broadcast_to(((i - j) % 4 < 2).astype(np.uint8)[None, None], (3, 12, 12, 12))
    out = orientation_s2(iso[:3], iso[3:], diag, r_max=4)
    asym = out["diag_asymmetry"]["12"]
    assert asym["fake"] > 0.2 and asym["real_a"] < 0.05 and asym["real_b"] < 0.05
    assert out["err"]["diag12+"] > 0.2 and out["floor"]["diag12+"] < 0.05
    assert out["diag_asymmetry"]["01"]["fake"] < 1e-12  # slices normal to axis 2 see no diagonal texture


def test_volume_axis_s2_compares_with_the_whole_volume():
    from bench.micro_benchmark import random_crops, volume_axis_s2_errors

    # anisotropic: layers of period 8 along axis 2, random along axes 0 and 1
    rng = np.random.default_rng(0)
    k = np.arange(48)
    vol = (((k % 8) < 3)[None, None, :] | (rng.random((40, 40, 48)) < 0.2)).astype(np.uint8)
    crops = random_crops(vol, 16, 40, seed=1)
    assert crops.shape == (40, 16, 16, 16) and set(np.unique(crops)) <= {0, 1}
    same = volume_axis_s2_errors(vol, random_crops(vol, 16, 40, seed=2), crops, phase=1)
    assert same["max_abs_err"].max() < 0.02 and same["floor"].max() < 0.02
    # the same layers along axis 0 instead: axis 0 and axis 2 are off, axis 1 (random in both) is not
    turned = np.ascontiguousarray(np.swapaxes(crops, 1, 3))
    out = volume_axis_s2_errors(vol, turned, crops, phase=1)
    assert out["max_abs_err"][0] > 0.1 and out["max_abs_err"][2] > 0.1 and out["max_abs_err"][1] < 0.02
    assert out["s2_volume"].shape == (3, 9) and out["n_fake"] == 40


def test_speed_bench_runs_the_training_loops_own_step_with_the_lazy_penalty_and_reused_fakes():
    """bench.micro3d_speed times physgan.train.loop's step functions (not a copy): a step of each variant trains."""
    from bench.micro3d_speed import CONFIGS, build, train_step

    for name in ("new", "lazy+reuse"):
        ts, t_cfg, objective = build(CONFIGS[name](), 16)
        assert (t_cfg.gp_every, t_cfg.reuse_fake) == ((2, True) if name == "lazy+reuse" else (1, False))
        before = [p.detach().clone() for p in ts.G.parameters()]
        train_step(ts, t_cfg, objective)
        assert ts.step == 1
        assert any(not torch.equal(a, p) for a, p in zip(before, ts.G.parameters()))
    from bench.micro3d_speed import part_times

    pieces = part_times(ts, t_cfg, objective, reps=1)
    assert len(pieces) == 4 and all(v > 0 for v in pieces.values())


def test_speed_bench_bf16_configuration_trains_and_times_its_pieces_in_bf16():
    """The ``bf16`` configuration is the preset with ``train.precision=bf16``: its step trains, and ``part_times`` runs
    the pieces under that precision (the generator's forward comes out in bf16 there)."""
    from bench.micro3d_speed import CONFIGS, build, part_times, train_step

    ts, t_cfg, objective = build(CONFIGS["bf16"](), 16)
    assert t_cfg.precision == "bf16"
    before = [p.detach().clone() for p in ts.G.parameters()]
    train_step(ts, t_cfg, objective)
    assert any(not torch.equal(a, p) for a, p in zip(before, ts.G.parameters()))
    conv = next(m for m in ts.G.modules() if isinstance(m, (torch.nn.ConvTranspose3d, torch.nn.Conv3d)))
    dtypes = set()
    hook = conv.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
    pieces = part_times(ts, t_cfg, objective, reps=1)
    hook.remove()
    assert len(pieces) == 4 and all(v > 0 for v in pieces.values())
    assert dtypes == {torch.bfloat16}
