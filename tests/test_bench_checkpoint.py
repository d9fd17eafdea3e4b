"""bench._util's checkpoint choice, shared by the calorimeter and microstructure benchmarks' ``--checkpoint``."""

from __future__ import annotations

import argparse

from bench._util import add_checkpoint_arg, checkpoint_suffix, checkpoint_to_load


def test_best_falls_back_to_last_only_when_the_run_kept_no_best(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert checkpoint_to_load(tmp_path, "best") == "last"
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"")
    assert checkpoint_to_load(tmp_path, "best") == "best"
    # an explicit choice is never replaced, even where a best exists
    assert checkpoint_to_load(tmp_path, "last") == "last"
    assert checkpoint_to_load(tmp_path, "step-0004000.pt") == "step-0004000.pt"


def test_other_checkpoints_never_share_the_best_s_output_names():
    assert checkpoint_suffix("best") == ""
    names = {checkpoint_suffix(c) for c in ["best", "last", "step-0004000.pt", "step-0004500.pt"]}
    assert names == {"", "_last", "_step-0004000", "_step-0004500"}


def test_the_option_defaults_to_best_and_takes_a_file_name():
    p = add_checkpoint_arg(argparse.ArgumentParser())
    assert p.parse_args([]).checkpoint == "best"
    assert p.parse_args(["--checkpoint", "step-0002500.pt"]).checkpoint == "step-0002500.pt"
    assert p.parse_args(["--checkpoint", "last"]).checkpoint == "last"
