"""physgan: conditional WGAN-GP surrogates for expensive scientific simulations.

Quick use (Python / Jupyter)::

    import physgan
    run = physgan.load_run("runs/calo-001")
    x = run.sample(n=1000, cond={"energy": 50.0}, seed=0)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_run", "Surrogate", "evaluate"]


def __getattr__(name: str):
    # lazy imports keep `import physgan` and the CLI start fast
    if name in ("load_run", "Surrogate"):
        from physgan import run as _run

        return getattr(_run, name)
    if name == "evaluate":
        from physgan.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'physgan' has no attribute '{name}'")
