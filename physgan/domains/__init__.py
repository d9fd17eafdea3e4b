"""Built-in domains; importing this package registers them (and their layouts).

See :mod:`physgan.domains.base` for the contract a domain fulfils.
"""

from __future__ import annotations

import importlib

from physgan.domains.base import Domain, ModelSpec, Transform, domains, get_domain, register_domain

__all__ = ["Domain", "ModelSpec", "Transform", "domains", "get_domain", "register_domain"]

for _name in ("array", "calo", "nbody", "micro"):
    try:
        importlib.import_module(f"physgan.domains.{_name}")
    except ModuleNotFoundError as _err:  # a domain module not written yet
        if _err.name != f"physgan.domains.{_name}":
            raise
