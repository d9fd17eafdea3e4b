"""Device and precision choice (physgan.device) and the one sampling path (physgan.sampling)."""

from __future__ import annotations

import pytest
import torch

from physgan.device import resolve_device, uses_bf16
from physgan.errors import ConfigError
from physgan.sampling import generate_batch


@pytest.mark.parametrize(
    "precision, device, expected",
    [("auto", "cpu", False), ("auto", "cuda", True), ("fp32", "cuda", False), ("fp32", "cpu", False), ("bf16", "cpu", True),
     ("bf16", "cuda", True)],
)
def test_bf16_rule(precision, device, expected):
    assert uses_bf16(precision, torch.device(device)) is expected


def test_resolve_device_names_and_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match="not a device name"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="cuda:99"):  # no CUDA here, or fewer than 100 devices
        resolve_device("cuda:99")


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(64, 64)

    def forward(self, z, c):
        return self.lin(z) + c


class _Shift:
    def inverse(self, y, c):
        return y - 1.0


def test_generate_batch_follows_the_runs_precision():
    G, z, c = _Linear(), torch.randn(8, 64, generator=torch.Generator().manual_seed(1)), torch.ones(8, 1)
    fp32 = generate_batch(G, _Shift(), lambda c: 2 * c, c, z, "fp32")
    with torch.no_grad():
        assert torch.equal(fp32, G.lin(z) + 2 * c - 1.0)  # normaliser before G, inverse after, in float32
    assert torch.equal(generate_batch(G, _Shift(), lambda c: 2 * c, c, z, "auto"), fp32)  # auto on CPU: fp32
    bf16 = generate_batch(G, _Shift(), lambda c: 2 * c, c, z, "bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # computed in bf16, returned as float32
    assert torch.allclose(bf16, fp32, atol=0.1)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, (0, 0, 1)),
        ({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}, (3, 1, 4)),
        ({"SLURM_PROCID": "5", "SLURM_LOCALID": "2", "SLURM_NTASKS": "8", "MASTER_ADDR": "node1"}, (5, 2, 8)),
        ({"SLURM_PROCID": "5", "SLURM_LOCALID": "2", "SLURM_NTASKS": "8"}, (5, 2, 1)),  # no rendezvous: alone
        ({"RANK": "1", "SLURM_PROCID": "7", "WORLD_SIZE": "2", "SLURM_NTASKS": "8", "MASTER_ADDR": "n"}, (1, 0, 2)),
    ],
)
def test_launcher_env_torchrun_then_slurm(monkeypatch, env, expected):
    from physgan.train.distributed import launch_rank, launcher_env

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launcher_env() == expected
    assert launch_rank() == expected[0]


def test_generate_batch_uses_the_generators_sampling_path_when_it_has_one():
    class WithSampler(_Linear):
        def sample_model(self, z, c):
            return torch.zeros_like(z)

    z, c = torch.randn(4, 64), torch.ones(4, 1)
    out = generate_batch(WithSampler(), _Shift(), lambda c: c, c, z, "fp32")
    assert torch.equal(out, torch.full((4, 64), -1.0))  # sample_model, then the inverse
