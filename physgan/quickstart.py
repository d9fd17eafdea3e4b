"""``physgan quickstart``: simulate -> train (CPU, minutes) -> generate -> evaluate -> report.

The README's main job. Everything lands in one folder::

    quickstart/data/train.h5  data/heldout.h5  run/  generated.h5  report/index.html
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from physgan.errors import OutputExistsError

__all__ = ["quickstart", "heldout_size"]


def _make(domain: str, options: dict, out: Path, seed: int, n: int) -> Path:
    """The quickstart's simulated file: the domain's quickstart make options, this seed and size."""
    from physgan.datamake import make_data

    return make_data(domain, out, **{**options, "seed": seed, "n": n, "overwrite": True})


def heldout_size(qs: dict, n_train: int) -> int:
    """Held-out samples of a domain's quickstart for ``n_train`` training samples.

    A quarter of the training set, at most 2000 and at least 200, unless the domain's ``quickstart`` entry sets
    ``heldout_fraction`` / ``n_heldout``: a domain whose metric needs many samples asks for more (nbody's density
    P(k) is measured to +-0.1 at 1000 fields, +-0.03 at 4000; bench/RESULTS.md §11).
    """
    return max(200, min(int(n_train * float(qs.get("heldout_fraction", 0.25))), int(qs.get("n_heldout", 2000))))


def quickstart(
    domain: str,
    directory: Path,
    steps: int | None = None,
    n: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Run the whole user journey on built-in simulated data; return the report's path.

    Parameters
    ----------
    domain : str
        A domain with a ``quickstart`` entry (calo, nbody, micro, array).
    directory : Path
        Output folder; must not hold a previous quickstart unless ``overwrite``.
    steps, n : int, optional
        Override the preset's training steps / the dataset size.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    """
    from physgan.config import resolve_config
    from physgan.domains.base import get_domain
    from physgan.io.hdf5 import read_all
    from physgan.run import load_run
    from physgan.train.loop import train

    dom = get_domain(domain)
    qs = dom.quickstart
    directory = Path(directory)
    if (directory / "run").exists():
        if not overwrite:
            raise OutputExistsError(f"{directory}: holds a previous quickstart; pass --overwrite or another --dir")
        shutil.rmtree(directory / "run")
    (directory / "data").mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def say(text: str) -> None:
        if progress:
            print(f"[quickstart {time.time() - t0:6.0f} s] {text}", flush=True)

    make_opts = dict(qs.get("make", {}))
    n_train = n or int(make_opts.get("n", 4000))
    n_held = heldout_size(qs, n_train)
    say(f"simulating {n_train} training and {n_held} held-out samples ({domain})")
    train_file = _make(domain, make_opts, directory / "data" / "train.h5", seed=1, n=n_train)
    held_file = _make(domain, make_opts, directory / "data" / "heldout.h5", seed=2, n=n_held)

    train_values = {"device": device, **({"steps": int(steps)} if steps is not None else {})}
    cfg = resolve_config(domain, qs.get("preset"), values={"data": {"path": str(train_file)}, "train": train_values})
    say(f"training {cfg.train.steps} steps (preset '{cfg.preset}'); progress below")
    result = train(cfg, directory / "run", progress=progress)
    if result.stopped_by == "SIGINT":  # Ctrl-C: the run is checkpointed; stop the journey here
        raise KeyboardInterrupt

    say("generating samples at the held-out conditions")
    run = load_run(directory / "run", device=device)
    _, c_held = read_all(held_file)
    # the held-out conditions come from the simulator's own ranges; with a small --n the training sample's
    # observed range is narrower, so a held-out value may lie just outside it (generated with a warning)
    fake_file = run.generate(
        directory / "generated.h5", len(c_held), c_held, seed=3, overwrite=True, progress=False, allow_extrapolation=True
    )

    from physgan.evaluation import evaluate

    report_dir = directory / "report"
    say("evaluating generated vs held-out samples; writing the report")
    ev = evaluate(str(held_file), str(fake_file), domain=domain, train=str(train_file), seed=0, run=directory / "run", progress=progress)
    ev.to_html(report_dir)
    say(f"report: {report_dir / 'index.html'}")
    return report_dir / "index.html"
