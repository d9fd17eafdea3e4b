"""bench._util.run_with_budget: the wall-clock budget stops training, and so does stopping the benchmark itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# a stand-in for `physgan train`: writes its pid, checkpoints ("stopped" file) and exits 0 on SIGTERM, else sleeps on
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    out = sys.argv[1]
    def stop(*_):
        open(os.path.join(out, "stopped"), "w").write("SIGTERM")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    open(os.path.join(out, "pid"), "w").write(str(os.getpid()))
    time.sleep(120)
    sys.exit(3)
    """
)


def _child(tmp_path: Path) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), str(tmp_path)]


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def test_the_budget_stops_the_child_with_sigterm(tmp_path):
    from bench._util import run_with_budget

    with open(tmp_path / "log", "w") as log:
        stopped, code = run_with_budget(_child(tmp_path), dict(os.environ), log, minutes=0.02)
    assert stopped and code == 0
    assert (tmp_path / "stopped").read_text() == "SIGTERM"


def test_stopping_the_benchmark_stops_its_training(tmp_path):
    """SIGTERM to the benchmark: its child gets SIGTERM (checkpoints, exits), then the benchmark exits non-zero."""
    parent = tmp_path / "parent.py"
    parent.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            sys.path.insert(0, {str(ROOT)!r})
            from bench._util import run_with_budget
            with open({str(tmp_path / "log")!r}, "w") as log:
                run_with_budget({_child(tmp_path)!r}, dict(os.environ), log, minutes=30)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(parent)], stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "pid")
    child_pid = int((tmp_path / "pid").read_text())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "stopped by SIGTERM" in err
    assert (tmp_path / "stopped").read_text() == "SIGTERM"  # the child checkpointed instead of running on
    try:
        os.kill(child_pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_a_finished_benchmark_training_is_extended_by_a_larger_max_steps_and_otherwise_returned(tmp_path):
    """``train_with_budget``: a rerun with the same ``--max-steps`` returns the recorded training; a larger one trains
    on from the last checkpoint (one more session, the steps reached, the wall time summed); a training that its budget
    stopped is returned as it is, whatever ``--max-steps`` asks."""
    import argparse
    import json

    from bench._util import add_training_args, train_with_budget
    from physgan.domains.calo.make import make_dataset

    data = make_dataset(tmp_path / "calo.h5", geometry="calogan", energy_gev=(10, 50), n=64, seed=0, progress=False)
    small = ["train.batch_size=8", "train.n_critic=1", "train.val_every=0", "data.val_size=8", "train.ckpt_every=1"]
    p = add_training_args(argparse.ArgumentParser())
    run = tmp_path / "work" / "run"
    sets = [f"--set={s}" for s in small]
    first = train_with_budget("calo", data, run, p.parse_args(["--max-steps", "2", "--train-minutes", "5", *sets]))
    assert first["steps"] == 2 and first["sessions"] == 1 and first["max_steps"] == 2 and not first["stopped_by_budget"]
    again = train_with_budget("calo", data, run, p.parse_args(["--max-steps", "2", "--train-minutes", "5"]))
    assert again == first
    longer = train_with_budget("calo", data, run, p.parse_args(["--max-steps", "4", "--train-minutes", "5", *sets]))
    assert longer["steps"] == 4 and longer["sessions"] == 2 and longer["wall_s"] > first["wall_s"]
    assert "--resume auto" in longer["command"]
    record = run / "benchmark_train.json"
    stopped = {**longer, "stopped_by_budget": True}
    record.write_text(json.dumps(stopped))
    assert train_with_budget("calo", data, run, p.parse_args(["--max-steps", "8", "--train-minutes", "5"])) == stopped
