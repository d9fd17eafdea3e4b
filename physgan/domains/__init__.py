"""Built-in domains; importing this package registers them (and their layouts).

See :mod:`physgan.domains.base` for the contract a domain fulfils.
"""

from __future__ import annotations

from physgan.domains import array, calo, micro, nbody  # noqa: F401  (importing registers them)
from physgan.domains.base import Domain, ModelSpec, Transform, domains, get_domain, register_domain

__all__ = ["Domain", "ModelSpec", "Transform", "domains", "get_domain", "register_domain"]
