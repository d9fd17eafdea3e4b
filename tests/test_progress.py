"""One progress mechanism (physgan.progress): the same modes and lines for simulators, generation, downloads, training."""

from __future__ import annotations

import re

import pytest

from physgan.errors import ConfigError
from physgan.progress import Progress, progress_mode
from physgan.train.stats import Progress as TrainingProgress


def test_progress_mode_is_validated_and_auto_follows_the_terminal():
    with pytest.raises(ConfigError, match="progress must be"):
        Progress(10, "x", progress="loud")
    # stderr is not a terminal under pytest: auto means plain lines
    assert progress_mode(None) == progress_mode(True) == "lines"
    assert progress_mode(False) == progress_mode("none") == "none"
    assert progress_mode("bar") == "bar"


@pytest.mark.parametrize("unit, total, step", [("B", 1000, 50), ("shower", 10000, 1024)])
def test_plain_progress_prints_about_every_ten_percent(capsys, unit, total, step):
    with Progress(total, "f.bin", unit, "lines") as bar:
        done = 0
        while done < total:
            bar.update(min(step, total - done))
            done += step
    lines = capsys.readouterr().err.strip().splitlines()
    pct = [int(m.group(1)) for m in (re.search(r"^f\.bin: (\d+)%", ln) for ln in lines) if m]
    assert len(pct) == len(lines) and pct[-1] == 100 and pct == sorted(pct) and len(pct) == len(set(pct))
    assert 9 <= len(pct) <= 10
    # resuming at 45 %: the first line is the next decile
    bar = Progress(1000, "f.bin", "B", "lines", initial=450)
    bar.update(100)
    assert "f.bin: 55%" in capsys.readouterr().err


def test_unknown_total_and_silence(capsys):
    bar = Progress(None, "s.bin", "B", "lines", unknown_every=100)
    for _ in range(5):
        bar.update(60)
    bar.close()
    err = capsys.readouterr().err.splitlines()
    assert [ln.split(" so far")[0] for ln in err[:-1]] == ["s.bin: 0.0 MB", "s.bin: 0.0 MB"] and err[-1].endswith("done")
    with Progress(10, "q", progress=False) as quiet:
        quiet.update(10)
        quiet.write("not shown")
    assert capsys.readouterr().err == ""


def test_bar_mode_is_tqdm_for_counts_and_training(capsys):
    with Progress(4, "gen", "sample", "bar") as bar:
        bar.update(4)
    err = capsys.readouterr().err
    assert "gen" in err and "100%" in err and "|" in err
    prog = TrainingProgress(10, enabled=False)
    prog.update(3, {"Loss/W": 1.0})
    prog.message("hidden")
    prog.close()
    assert capsys.readouterr().err == ""
