"""Keyword-argument library API of ``physgan data make`` and ``physgan data import``.

A domain declares its simulator and importer options once, as argparse options
(``Domain.add_make_arguments`` / ``add_import_arguments``). These functions take them as keyword
arguments (dashes as underscores), fill the declared defaults and call the domain, so Python code
and the quickstart never go through the command-line parser::

    from physgan.datamake import make_data, import_data
    make_data("calo", "calo.h5", n=2000, energy="1:100", seed=0)
    import_data("micro", "berea.zip", "berea.h5", crop=64, voxel_size=1e-6)
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from physgan.errors import ConfigError

__all__ = ["make_data", "import_data", "domain_namespace"]


def domain_namespace(
    add_arguments: Callable[[argparse.ArgumentParser], None], required: list[str], options: dict[str, Any], what: str
) -> argparse.Namespace:
    """The namespace a domain's ``make``/``import_`` expects: its declared defaults, then ``options``.

    Parameters
    ----------
    add_arguments : callable
        The domain's ``add_make_arguments`` or ``add_import_arguments``.
    required : list of str
        Command-line form of the required arguments (``["--out", "f.h5"]``, a positional input).
    options : dict
        Keyword values (names as the namespace holds them: ``voxel_size`` for ``--voxel-size``),
        already of the declared types.
    what : str
        The command, for messages (``physgan data make calo``).

    Raises
    ------
    ConfigError
        An option the domain does not declare (with the closest declared one).
    """
    parser = argparse.ArgumentParser(prog=what)
    add_arguments(parser)
    try:
        ns = parser.parse_args(required)
    except SystemExit as err:  # a required option the domain added beyond the ones we fill
        raise ConfigError(f"{what}: cannot fill its required arguments from {required}") from err
    known = vars(ns)
    for key, value in options.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; its options: {', '.join(sorted(known))}"
            raise ConfigError(f"{what} has no option '{key}'{hint}")
        setattr(ns, key, value)
    return ns


def make_data(domain: str, out: str | Path, **options: Any) -> Path:
    """Simulate a training set with the domain's built-in simulator (``physgan data make DOMAIN``).

    Parameters
    ----------
    domain : str
        A registered domain with a simulator (calo, nbody, micro, array).
    out : path
        Output HDF5 file.
    **options
        The options of ``physgan data make DOMAIN`` (``n``, ``seed``, ``overwrite``, ...).

    Returns
    -------
    Path
        The written file.
    """
    from physgan.domains.base import get_domain

    dom = get_domain(domain)
    if dom.make is None or dom.add_make_arguments is None:
        raise ConfigError(f"domain '{domain}' has no simulator (physgan data make {domain})")
    ns = domain_namespace(dom.add_make_arguments, ["--out", str(out)], options, f"physgan data make {domain}")
    return Path(dom.make(ns))


def import_data(domain: str, source: str | Path, out: str | Path, **options: Any) -> Path:
    """Convert a foreign file with the domain's importer (``physgan data import DOMAIN``).

    Parameters
    ----------
    domain : str
        A registered domain with an importer (nbody, micro).
    source : path
        The foreign file (particle snapshot, TIFF stack, zip).
    out : path
        Output HDF5 file.
    **options
        The options of ``physgan data import DOMAIN`` (``crop``, ``voxel_size``, ``overwrite``, ...).

    Returns
    -------
    Path
        The written file.
    """
    from physgan.domains.base import get_domain

    dom = get_domain(domain)
    if dom.import_ is None or dom.add_import_arguments is None:
        raise ConfigError(f"domain '{domain}' has no importer (physgan data import {domain})")
    ns = domain_namespace(dom.add_import_arguments, [str(source), "--out", str(out)], options, f"physgan data import {domain}")
    return Path(dom.import_(ns))
