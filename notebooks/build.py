"""Build the example notebooks (one per domain) from the cell sources below, without outputs.

The notebooks are generated so they can be reviewed as code and never drift by hand-editing::

    python notebooks/build.py           # (re)write notebooks/*.ipynb
    python notebooks/build.py --check   # exit 1 if a committed notebook differs from this script's output

``tests/test_notebooks.py`` executes them top to bottom with small settings
(environment variables ``PHYSGAN_NB_STEPS``, ``PHYSGAN_NB_N``, ``PHYSGAN_NB_DIR``).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

from physgan.io.atomic import atomic_output

__all__ = ["NOTEBOOKS", "build_notebook", "render", "main"]

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str]  # ("md" | "code", source)


def md(text: str) -> Cell:
    return ("md", textwrap.dedent(text).strip("\n"))


def code(text: str) -> Cell:
    return ("code", textwrap.dedent(text).strip("\n"))


def _setup(domain: str, steps: int, n: int, imports: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Cell:
    """The first code cell: imports, inline figures, the environment knobs and the working folders."""
    lines = [
        "import os",
        "import shutil",
        *(["import warnings"] if any("warnings." in a for a in after) else []),
        "from pathlib import Path",
        "",
        "import matplotlib.pyplot as plt",
        "import numpy as np",
        "from IPython.display import display",
        "",
        "import physgan",
        "import physgan.domains  # registers calo, nbody, micro (their report plots select the Agg backend)",
        *imports,
        "from physgan.config import resolve_config",
        "from physgan.io.hdf5 import open_source, read_all",
        "from physgan.train.loop import train",
        "",
        "%matplotlib inline",
        *after,
        "",
        "# Knobs (the test sets tiny values through the environment)",
        f'STEPS = int(os.environ.get("PHYSGAN_NB_STEPS", "{steps}"))  # generator steps on CPU',
        f'N_TRAIN = int(os.environ.get("PHYSGAN_NB_N", "{n}"))  # simulated training samples',
        "N_HELD = max(100, N_TRAIN // 2)  # held-out samples for the evaluation",
        'WORK = Path(os.environ.get("PHYSGAN_NB_DIR", "."))  # data/ and runs/ go here (git ignores both)',
        f'DATA, RUN_DIR = WORK / "data" / "{domain}", WORK / "runs" / "{domain}-notebook"',
        "DATA.mkdir(parents=True, exist_ok=True)",
        'print(f"physgan {physgan.__version__}: {STEPS} steps, {N_TRAIN} training / {N_HELD} held-out samples")',
    ]
    return ("code", "\n".join(lines))


def _train_cells(domain: str, preset: str, what: str) -> list[Cell]:
    return [
        md(
            f"""
            ## 2. Train briefly

            The `{preset}` preset of the `{domain}` domain with `train.steps` cut to `STEPS`; one validation and one
            checkpoint at the end. `train` writes the run directory (config, `stats.jsonl`, `log.txt`, checkpoints)
            exactly like `physgan train {domain} --data ... --run ...`. Warnings such as *possible mode collapse*
            are the trainer's diagnostics speaking: expected after so few steps.

            **A few hundred CPU steps give a rough surrogate of {what}**, enough to see the workflow and the
            plots, not a physics-grade model.
            """
        ),
        code(
            f"""
            cfg = resolve_config(
                "{domain}",
                "{preset}",
                overrides=[
                    f"data.path={{TRAIN_FILE}}",
                    f"train.steps={{STEPS}}",
                    f"train.val_every={{STEPS}}",
                    f"train.ckpt_every={{STEPS}}",
                    f"train.log_every={{max(1, STEPS // 4)}}",
                    "train.device=cpu",
                    "train.seed=0",
                ],
            )
            shutil.rmtree(RUN_DIR, ignore_errors=True)  # a fresh run each time the notebook runs
            result = train(cfg, RUN_DIR, progress=False)
            print(f"trained {{result.step}} steps; validation score {{result.best_score}}; run in {{RUN_DIR}}")
            """
        ),
        code(
            """
            # Training curves from the run's stats.jsonl: the critic's Wasserstein estimate and the gradient penalty
            import json

            rows = [json.loads(line) for line in (RUN_DIR / "stats.jsonl").read_text().splitlines()]
            loss = [r for r in rows if "Loss/W" in r]
            fig, ax = plt.subplots(1, 2, figsize=(9, 3))
            ax[0].plot([r["step"] for r in loss], [r["Loss/W"] for r in loss], "o-")
            ax[0].set(xlabel="generator step", ylabel="critic Wasserstein estimate")
            ax[1].plot([r["step"] for r in loss], [r["Loss/GP"] for r in loss], "o-")
            ax[1].set(xlabel="generator step", ylabel="gradient penalty")
            fig.tight_layout()
            display(fig)
            plt.close(fig)
            """
        ),
    ]


def _evaluate_cells(domain: str) -> list[Cell]:
    return [
        md(
            """
            ## 5. Evaluate

            `physgan.evaluate` compares the generated samples with the held-out real ones: Fréchet and kernel
            physics distances on high-level features, precision / recall / density / coverage, classifier AUCs
            (0.5 is ideal), per-feature 1-D Wasserstein distances and the domain's physics metrics. Every number
            comes with a bootstrap error and a **noise floor** (the same metric between two halves of the real
            set), and the verdict says whether the surrogate is distinguishable from real data at that precision.
            With the training set given it also checks for memorised training samples.
            """
        ),
        code(
            f"""
            ev = physgan.evaluate(HELD_FILE, FAKE_FILE, domain="{domain}", train=TRAIN_FILE, seed=0, n_boot=5)
            ev  # the summary table (per-feature rows: ev.summary(per_feature=True))
            """
        ),
        code(
            """
            # The evaluation's figures: marginal histograms with ratio panels, then the domain's own plots
            for fig in ev.plot():
                display(fig)
            """
        ),
        code(
            """
            # The same as `physgan evaluate --report`: metrics.json, PNG figures and a self-contained index.html
            report = ev.to_html(WORK / "runs" / f"{RUN_DIR.name}-report", overwrite=True)
            print(report / "index.html")
            """
        ),
    ]


# ---------------------------------------------------------------------------------------------
# calorimeter
# ---------------------------------------------------------------------------------------------
CALORIMETER: list[Cell] = [
    md(
        """
        # Calorimeter showers: a conditional WGAN-GP surrogate

        **The physics question.** In LHC experiments the Geant4 simulation of particle showers in the calorimeters
        takes most of the simulation CPU budget. A generative surrogate conditioned on the incident energy
        $E_\\mathrm{inc}$ produces showers orders of magnitude faster, but it is only useful if it reproduces what
        analyses rely on: the **average shower shape** in every layer, the longitudinal profile (energy per layer),
        and above all the **energy response** $E_\\mathrm{tot}/E_\\mathrm{inc}$ and **resolution**
        $\\sigma(E_\\mathrm{tot})/\\langle E_\\mathrm{tot}\\rangle$ as a function of $E_\\mathrm{inc}$.

        This notebook simulates positron showers with physgan's built-in GFlash parametrisation (Grindhammer & Peters,
        hep-ex/0001020) in the CaloGAN geometry (three layers of 3×96, 12×12 and 12×6 cells plus 3 overflow energies;
        Paganini, de Oliveira & Nachman, PRL 120 (2018) 042003), trains a surrogate briefly on CPU, samples it at chosen
        energies, compares real and generated showers, and evaluates the surrogate.

        > **A few hundred CPU steps give a rough surrogate.** The figures below show the workflow, not a converged
        > model; the last section says how to train a real one.
        """
    ),
    _setup("calo", 300, 2000),
    md(
        """
        ## 1. Simulate a small dataset

        Seeded GFlash showers with $E_\\mathrm{inc}$ uniform in 10-100 GeV: a training file and an independent held-out
        file (the same as `physgan data make calo --geometry calogan --energy 10:100 --n ... --out ...`).
        """
    ),
    code(
        """
        from physgan.domains.calo.make import make_dataset
        from physgan.io.info import format_info, inspect_file

        common = dict(geometry="calogan", particle="e+", energy_gev=(10.0, 100.0), energy_dist="uniform", overwrite=True, progress=False)
        TRAIN_FILE = make_dataset(DATA / "train.h5", n=N_TRAIN, seed=1, **common)
        HELD_FILE = make_dataset(DATA / "heldout.h5", n=N_HELD, seed=2, **common)
        print(format_info(inspect_file(str(HELD_FILE))))
        """
    ),
    code(
        """
        # One real shower, layer by layer (MeV per cell, log colour scale)
        from matplotlib.colors import LogNorm

        from physgan.domains.calo.features import incident_energy_mev, resolve_geometry

        x_held, c_held = read_all(HELD_FILE)
        attrs = dict(open_source(HELD_FILE).header.attrs)  # geometry, units, provenance
        geo = resolve_geometry(attrs)
        i = int(np.argmax(c_held[:, 0]))
        fig, axes = plt.subplots(1, geo.n_layers, figsize=(12, 3))
        for k, (ax, img) in enumerate(zip(axes, geo.images(x_held[i : i + 1]))):
            shown = np.where(img[0] > 0, img[0], np.nan)  # empty cells blank
            im = ax.imshow(shown, norm=LogNorm(vmin=1e-2), aspect="auto", origin="lower", interpolation="nearest")
            ax.set_title(f"layer {k}")
            fig.colorbar(im, ax=ax, label="MeV")
        fig.suptitle(f"a real {c_held[i, 0]:.1f} GeV positron shower")
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    *_train_cells("calo", "quick", "the showers"),
    md(
        """
        ## 3. Load the run and sample at chosen conditions

        `physgan.load_run` gives the EMA generator with its transform and condition normalisation; `run.sample`
        returns showers in MeV. Conditions can be fixed values, ranges `(lo, hi)` (uniform), or an array, and are
        refused outside the training range unless `allow_extrapolation=True`.
        """
    ),
    code(
        """
        run = physgan.load_run(RUN_DIR, device="cpu")
        print(run)
        energies = [20.0, 50.0, 90.0]
        fixed = {e: run.sample(1000, cond={"energy": e}, seed=0) for e in energies}
        for e, x in fixed.items():
            resp = x[:, : geo.n_cells].sum(1) / (e * 1000.0)
            print(f"E_inc = {e:5.1f} GeV: generated response E_tot/E_inc = {resp.mean():.3f} ± {resp.std():.3f}")
        """
    ),
    code(
        """
        # Generated showers at the held-out energies, written in the training file's layout (as `physgan generate` does)
        FAKE_FILE = run.generate(DATA / "generated.h5", len(c_held), c_held, seed=1, overwrite=True, progress=False)
        x_fake, c_fake = read_all(FAKE_FILE)
        print(x_fake.shape, "showers; same conditions as the held-out set:", np.allclose(c_fake, c_held))
        """
    ),
    md(
        """
        ## 4. Real vs generated

        The average shower per layer (shape), the energy response and resolution vs incident energy, and the
        response distribution at the fixed energies sampled above against real showers of nearby energy.
        """
    ),
    code(
        """
        fig, axes = plt.subplots(2, geo.n_layers, figsize=(12, 5.5))
        for row, (label, x) in enumerate((("real", x_held), ("generated", x_fake))):
            for k, img in enumerate(geo.images(x)):
                mean = img.mean(0)
                shown = np.where(mean > 0, mean, np.nan)
                im = axes[row, k].imshow(shown, norm=LogNorm(vmin=1e-3), aspect="auto", origin="lower", interpolation="nearest")
                axes[row, k].set_title(f"{label}: mean of layer {k}")
                fig.colorbar(im, ax=axes[row, k], label="MeV")
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    code(
        """
        def response(x, c):
            return x[:, : geo.n_cells].sum(1) / incident_energy_mev(c, geo)

        edges = np.linspace(10.0, 100.0, 7)
        centres = (edges[1:] + edges[:-1]) / 2
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        for label, x, c, style in (("real", x_held, c_held, "ko-"), ("generated", x_fake, c_fake, "rs--")):
            r, e = response(x, c), c[:, 0]
            idx = np.digitize(e, edges[1:-1])
            mean = np.array([r[idx == b].mean() for b in range(len(centres))])
            res = np.array([r[idx == b].std() for b in range(len(centres))]) / mean
            ax[0].plot(centres, mean, style, label=label)
            ax[1].plot(centres, res, style, label=label)
        ax[0].set(xlabel="incident energy (GeV)", ylabel="mean E_tot / E_inc", title="response")
        ax[1].set(xlabel="incident energy (GeV)", ylabel="std / mean of E_tot / E_inc", title="resolution")
        ax[0].legend()
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    code(
        """
        fig, axes = plt.subplots(1, len(energies), figsize=(12, 3))
        r_held = response(x_held, c_held)
        for ax, e in zip(axes, energies):
            near = np.abs(c_held[:, 0] - e) < 5.0
            r_gen = fixed[e][:, : geo.n_cells].sum(1) / (e * 1000.0)
            bins = np.linspace(min(r_gen.min(), r_held.min()), max(r_gen.max(), r_held.max()), 40)
            ax.hist(r_held[near], bins, density=True, alpha=0.4, color="k", label=f"real, |E - {e:.0f}| < 5 GeV")
            ax.hist(r_gen, bins, density=True, histtype="step", color="tab:red", lw=1.5, label=f"generated at {e:.0f} GeV")
            ax.set(xlabel="E_tot / E_inc", title=f"{e:.0f} GeV")
            ax.legend(fontsize=7)
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    *_evaluate_cells("calo"),
    md(
        """
        ## Train a real surrogate

        The numbers above come from a few hundred CPU steps on a couple of thousand showers, so expect the classifier
        AUCs near 1 and verdicts far above the noise floor. A physics-grade surrogate needs far more data and steps:

        ```bash
        physgan data make calo --geometry calogan --particle e+ --energy 1:100 --n 100000 --out data/calo.h5
        physgan train calo --data data/calo.h5 --run runs/calo-gpu --preset gpu      # 100k steps, batch 1024, on a GPU
        physgan generate runs/calo-gpu --n 100000 --cond energy=1:100 --out fake.h5
        physgan evaluate --real data/heldout.h5 --fake fake.h5 --train data/calo.h5 --report report/
        ```

        The `default` preset (20k steps) is the middle ground on a workstation CPU; `physgan train --help` lists the
        options (resume, multi-GPU, config overrides with `--set`). The CaloChallenge geometries work the same way
        (`--geometry calochallenge-ds2`).
        """
    ),
]

# ---------------------------------------------------------------------------------------------
# N-body
# ---------------------------------------------------------------------------------------------
NBODY: list[Cell] = [
    md(
        """
        # Cosmological density fields: a conditional WGAN-GP surrogate

        **The physics question.** Inferring the cosmological parameters $\\Omega_m$ and $\\sigma_8$ from galaxy surveys
        needs thousands of N-body simulations of the cosmic web, each expensive. A generator conditioned on
        $(\\Omega_m, \\sigma_8)$ produces density fields in milliseconds, and it is useful only if their statistics follow the
        parameters like the simulations do: the **matter power spectrum** $P(k)$ (its amplitude scales as $\\sigma_8^2$ on large
        scales, its shape depends on $\\Omega_m$), the non-Gaussian **one-point PDF** of the density and the peak counts.

        This notebook simulates 2-D slabs (32² cells of 64 Mpc/h boxes) with physgan's fast lognormal simulator
        (`physgan data make nbody --sim pm` runs a particle-mesh N-body instead), trains physgan's spectral generator
        (white noise coloured per Fourier shell by a learned, cosmology-dependent amplitude) briefly on CPU, samples it at
        chosen cosmologies, compares slices and $P(k)$, and evaluates.

        > **A few hundred CPU steps give a rough surrogate.** The figures below show the workflow, not a converged
        > model; the last section says how to train a real one.
        """
    ),
    _setup("nbody", 200, 1000),
    md(
        """
        ## 1. Simulate a small dataset

        Lognormal density fields $1 + \\delta$ with $\\Omega_m \\in [0.2, 0.4]$ and $\\sigma_8 \\in [0.6, 1.0]$ drawn
        uniformly (the same as `physgan data make nbody --sim lognormal --dim 2 --grid 32 --box 64 --n ... --out ...`).
        """
    ),
    code(
        """
        from physgan.domains.nbody.make import make_dataset
        from physgan.io.info import format_info, inspect_file

        common = dict(sim_kind="lognormal", dim=2, grid=32, box=64.0, omega_m=(0.2, 0.4), sigma8=(0.6, 1.0), overwrite=True, progress=False)
        TRAIN_FILE = make_dataset(DATA / "train.h5", n=N_TRAIN, seed=1, **common)
        HELD_FILE = make_dataset(DATA / "heldout.h5", n=N_HELD, seed=2, **common)
        print(format_info(inspect_file(str(HELD_FILE))))
        header = open_source(HELD_FILE).header
        BOX = float(header.attrs["box_size"])  # Mpc/h
        """
    ),
    code(
        """
        # Real slabs at the lowest and highest sigma8 of the held-out set (log density)
        x_held, c_held = read_all(HELD_FILE)
        names = list(header.condition_names)
        j_s8 = names.index("sigma8")
        order = np.argsort(c_held[:, j_s8])
        pick = [*order[:2], *order[-2:]]
        fig, axes = plt.subplots(1, 4, figsize=(12, 3))
        for ax, i in zip(axes, pick):
            ax.imshow(np.log10(np.maximum(x_held[i], 1e-3)), cmap="magma", vmin=-1, vmax=1)
            ax.set_title(f"Ωm={c_held[i, names.index('omega_m')]:.2f}  σ8={c_held[i, j_s8]:.2f}", fontsize=9)
            ax.set_axis_off()
        fig.suptitle("real slabs, log10(1 + δ)")
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    *_train_cells("nbody", "quick", "the density fields"),
    md(
        """
        ## 3. Load the run and sample at chosen conditions

        `run.sample(n, cond={...})` returns fields of $1 + \\delta$; conditions not given are drawn over their training
        range (values outside the range seen in training are refused unless `allow_extrapolation=True`). Linear theory
        says the large-scale power at $\\sigma_8 = 0.95$ is $(0.95/0.65)^2 \\approx 2.1$ times that at $\\sigma_8 = 0.65$
        (approximately, for these lognormal fields): a first test of whether the surrogate learned the conditioning.
        """
    ),
    code(
        """
        from physgan.metrics.spectra import power_spectrum

        run = physgan.load_run(RUN_DIR, device="cpu")
        print(run)
        lo = run.sample(500, cond={"omega_m": 0.3, "sigma8": 0.65}, seed=0)
        hi = run.sample(500, cond={"omega_m": 0.3, "sigma8": 0.95}, seed=0)
        pk_lo = power_spectrum(lo, BOX, dim=2).pk.mean(0)
        ps_hi = power_spectrum(hi, BOX, dim=2)
        ratio = ps_hi.pk.mean(0) / pk_lo
        print(f"generated P(k, σ8=0.95) / P(k, σ8=0.65), 3 lowest k: {np.round(ratio[:3], 2)}; linear theory {(0.95 / 0.65) ** 2:.2f}")
        """
    ),
    code(
        """
        # Generated fields at the held-out cosmologies, written in the training file's layout (as `physgan generate` does)
        FAKE_FILE = run.generate(DATA / "generated.h5", len(c_held), c_held, seed=1, overwrite=True, progress=False)
        x_fake, c_fake = read_all(FAKE_FILE)
        print(x_fake.shape, "fields; mean density (real ≈ 1):", round(float(x_fake.mean()), 3), "real:", round(float(x_held.mean()), 3))
        """
    ),
    md(
        """
        ## 4. Real vs generated

        Slices side by side at the same cosmologies, and the mean power spectrum in a low- and a high-$\\sigma_8$ half
        of the held-out set, real against generated at the same conditions.
        """
    ),
    code(
        """
        fig, axes = plt.subplots(2, 4, figsize=(12, 6))
        for col, i in enumerate(pick):
            for row, (label, x) in enumerate((("real", x_held), ("generated", x_fake))):
                axes[row, col].imshow(np.log10(np.maximum(x[i], 1e-3)), cmap="magma", vmin=-1, vmax=1)
                axes[row, col].set_title(f"{label}, σ8={c_held[i, j_s8]:.2f}", fontsize=9)
                axes[row, col].set_axis_off()
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    code(
        """
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
        median = np.median(c_held[:, j_s8])
        for half, colour in (("σ8 < median", "tab:blue"), ("σ8 ≥ median", "tab:orange")):
            sel = c_held[:, j_s8] < median if half.startswith("σ8 <") else c_held[:, j_s8] >= median
            ps_r = power_spectrum(x_held[sel], BOX, dim=2)
            ps_f = power_spectrum(x_fake[sel], BOX, dim=2)
            ax[0].loglog(ps_r.k, ps_r.pk.mean(0), "-", color=colour, label=f"real, {half}")
            ax[0].loglog(ps_f.k, ps_f.pk.mean(0), "--", color=colour, label=f"generated, {half}")
            ax[1].semilogx(ps_r.k, ps_f.pk.mean(0) / ps_r.pk.mean(0), "o-", ms=3, color=colour, label=half)
        ax[0].set(xlabel="k (h/Mpc)", ylabel="P(k) ((Mpc/h)²)", title="mean power spectrum")
        ax[0].legend(fontsize=7)
        ax[1].axhline(1.0, color="k", lw=0.6)
        ax[1].set(xlabel="k (h/Mpc)", ylabel="generated / real", title="ratio")
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    *_evaluate_cells("nbody"),
    md(
        """
        ## Train a real surrogate

        A few hundred CPU steps on a couple of thousand slabs reproduce the mean density and little else; expect the
        power-spectrum ratio far from 1 and verdicts far above the noise floor. For a physics-grade surrogate, use
        particle-mesh N-body data (or import Quijote / CAMELS snapshots with `physgan data import nbody`), more samples
        and the `gpu` preset:

        ```bash
        physgan data make nbody --sim pm --dim 2 --grid 64 --box 128 --n 20000 --out data/nbody.h5
        physgan train nbody --data data/nbody.h5 --run runs/nbody-gpu --preset gpu    # 100k steps, on a GPU
        physgan generate runs/nbody-gpu --n 5000 --cond omega_m=0.3 --cond sigma8=0.8 --out fake.h5
        physgan evaluate --real data/heldout.h5 --fake fake.h5 --train data/nbody.h5 --report report/
        ```
        """
    ),
]

# ---------------------------------------------------------------------------------------------
# microstructure
# ---------------------------------------------------------------------------------------------
MICROSTRUCTURE: list[Cell] = [
    md(
        """
        # Materials microstructures: a conditional WGAN-GP surrogate

        **The physics question.** The microstructure of a porous material (a battery electrode, a sandstone, a fuel-cell
        layer) sets its transport properties: effective diffusivity, tortuosity, permeability. Imaging it (micro-CT,
        FIB-SEM) is slow and gives few samples; a generator conditioned on descriptors such as the **porosity** produces
        as many statistically equivalent microstructures as a design study needs (Mosser, Dubrule & Blunt,
        PRE 96 (2017) 043309; Kench & Cooper, SliceGAN, Nat. Mach. Intell. 3 (2021) 299). It is useful only if the
        generated phase fraction follows the requested porosity and the spatial statistics match: the **two-point
        correlation** $S_2(r)$, the specific surface area and the chord-length distributions.

        This notebook makes synthetic two-phase images with porespy's `blobs` generator (porosity in [0.3, 0.6],
        blobiness in [0.5, 1], 32×32 pixels), trains a fully convolutional generator briefly on CPU, samples it at chosen
        porosities, compares images and $S_2$, and evaluates.

        > **A few hundred CPU steps give a rough surrogate.** The figures below show the workflow, not a converged
        > model; the last section says how to train a real one.
        """
    ),
    _setup(
        "micro",
        300,
        1000,
        imports=("from physgan.cli import main as physgan_cli  # the `physgan` command, called from Python",),
        after=('warnings.filterwarnings("ignore", message="IProgress not found")  # porespy imports tqdm.auto; no widgets here',),
    ),
    md(
        """
        ## 1. Simulate a small dataset

        The `physgan data make micro` command, called from Python (each image is seeded, conditions drawn uniformly).
        """
    ),
    code(
        """
        from physgan.io.info import format_info, inspect_file

        def make_micro(out, n, seed):
            argv = ["data", "make", "micro", "--generator", "blobs", "--porosity", "0.3:0.6", "--blobiness", "0.5:1",
                    "--shape", "32,32", "--n", str(n), "--seed", str(seed), "--out", str(out), "--overwrite"]
            if physgan_cli(argv) != 0:
                raise RuntimeError("physgan " + " ".join(argv) + " failed")
            return out

        TRAIN_FILE = make_micro(DATA / "train.h5", N_TRAIN, seed=1)
        HELD_FILE = make_micro(DATA / "heldout.h5", N_HELD, seed=2)
        print(format_info(inspect_file(str(HELD_FILE))))
        header = open_source(HELD_FILE).header
        """
    ),
    code(
        """
        # Real images at the lowest and highest porosity of the held-out set (pore = phase 0, black)
        x_held, c_held = read_all(HELD_FILE)
        names = list(header.condition_names)
        j_por = names.index("porosity")
        order = np.argsort(c_held[:, j_por])
        pick = [*order[:2], *order[-2:]]
        fig, axes = plt.subplots(1, 4, figsize=(12, 3))
        for ax, i in zip(axes, pick):
            ax.imshow(x_held[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(", ".join(f"{n}={c_held[i, j]:.2f}" for j, n in enumerate(names)), fontsize=9)
            ax.set_axis_off()
        fig.suptitle("real microstructures")
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    *_train_cells("micro", "quick", "the microstructures"),
    md(
        """
        ## 3. Load the run and sample at chosen conditions

        `run.sample` returns images of phase labels. The first check of a conditional microstructure generator:
        does the measured porosity of the generated images follow the requested one?
        """
    ),
    code(
        """
        run = physgan.load_run(RUN_DIR, device="cpu")
        print(run)
        requested = [0.35, 0.45, 0.55]
        fixed = {p: run.sample(200, cond={"porosity": p}, seed=0) for p in requested}
        for p, x in fixed.items():
            measured = (np.rint(x) == 0).mean(axis=(1, 2))
            print(f"requested porosity {p:.2f}: generated {measured.mean():.3f} ± {measured.std():.3f}")
        """
    ),
    code(
        """
        # Generated images at the held-out conditions, written in the training file's layout (as `physgan generate` does)
        FAKE_FILE = run.generate(DATA / "generated.h5", len(c_held), c_held, seed=1, overwrite=True, progress=False)
        x_fake, c_fake = read_all(FAKE_FILE)
        print(x_fake.shape, "images; labels:", np.unique(x_fake))
        """
    ),
    md(
        """
        ## 4. Real vs generated

        Images side by side at the same conditions, the generated porosity against the requested one, and the mean
        two-point correlation $S_2(r)$ of the pore phase ($S_2(0)$ is the porosity; the decay length is the pore size).
        """
    ),
    code(
        """
        fig, axes = plt.subplots(2, 4, figsize=(12, 6))
        for col, i in enumerate(pick):
            for row, (label, x) in enumerate((("real", x_held), ("generated", x_fake))):
                axes[row, col].imshow(x[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                axes[row, col].set_title(f"{label}, porosity={c_held[i, j_por]:.2f}", fontsize=9)
                axes[row, col].set_axis_off()
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    code(
        """
        from physgan.domains.micro.metrics import mean_s2

        fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
        for label, x, style in (("real", x_held, "k."), ("generated", x_fake, "r.")):
            ax[0].plot(c_held[:, j_por], (np.rint(x) == 0).mean(axis=(1, 2)), style, ms=3, label=label)
        ax[0].plot([0.3, 0.6], [0.3, 0.6], "k-", lw=0.6)
        ax[0].set(xlabel="requested porosity", ylabel="measured porosity", title="conditioning")
        ax[0].legend()
        for label, x, style in (("real", x_held, "ko-"), ("generated", x_fake, "rs--")):
            r, s2 = mean_s2(x, phase=0)
            ax[1].plot(r, s2, style, ms=3, label=label)
        ax[1].set(xlabel="r (pixels)", ylabel="S2(r) of the pore phase", title="two-point correlation")
        ax[1].legend()
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        """
    ),
    *_evaluate_cells("micro"),
    md(
        """
        ## Train a real surrogate

        A few hundred CPU steps give blurry structures whose porosity only loosely follows the request. For real work,
        use more and larger samples (or your own segmented images via `physgan data import micro stack.tif`), 3-D volumes
        with the SliceGAN slice critic, and a GPU:

        ```bash
        physgan data make micro --generator blobs --porosity 0.3:0.6 --shape 64,64,64 --n 2000 --out data/micro.h5
        physgan train micro --data data/micro.h5 --run runs/micro-gpu --set train.steps=50000   # default preset, on a GPU
        physgan generate runs/micro-gpu --n 100 --cond porosity=0.45 --out fake.h5
        physgan evaluate --real data/heldout.h5 --fake fake.h5 --train data/micro.h5 --report report/
        ```
        """
    ),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "calorimeter": CALORIMETER,
    "nbody": NBODY,
    "microstructure": MICROSTRUCTURE,
}


def build_notebook(name: str, cells: list[Cell]) -> nbformat.NotebookNode:
    """A clean (output-free) notebook with stable cell ids.

    Parameters
    ----------
    name : str
        Notebook stem; cell ids are ``<name>-<index>`` so rebuilding gives identical files.
    cells : list of (kind, source)
        ``kind`` is ``md`` or ``code``.

    Returns
    -------
    nbformat.NotebookNode
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, source) in enumerate(cells):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        cell["id"] = f"{name}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The notebook file's text for ``name``."""
    return nbformat.writes(build_notebook(name, NOTEBOOKS[name])) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the notebooks (or, with ``--check``, report which differ from this script); return an exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the notebooks are up to date")
    parser.add_argument("names", nargs="*", help=f"notebooks to build: {', '.join(NOTEBOOKS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; choose from {list(NOTEBOOKS)}")
    stale = []
    for name in args.names or list(NOTEBOOKS):
        path = HERE / f"{name}.ipynb"
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            with atomic_output(path, overwrite=True) as tmp:
                tmp.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/build.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
