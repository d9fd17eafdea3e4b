"""Reference simulators that make training and validation data for physgan's domains.

* :mod:`physgan.sim.gflash`: Grindhammer-Peters / GFlash parametrised electromagnetic showers
  deposited into a calorimeter geometry (CaloGAN, CaloChallenge DS2/DS3 binnings).
* :mod:`physgan.sim.nbody`: cosmological density fields.

Submodules are imported on demand (``from physgan.sim.gflash import simulate_showers``) so that
importing one simulator never pays for the others.
"""

from __future__ import annotations

__all__ = ["gflash", "nbody"]
