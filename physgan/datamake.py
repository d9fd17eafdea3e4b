"""Keyword-argument library API of ``physgan data make`` and ``physgan data import``.

A domain declares its simulator and importer options once, as argparse options
(``Domain.add_make_arguments`` / ``add_import_arguments``): their names (dashes as underscores),
types and defaults. ``Domain.make`` / ``Domain.import_`` take every declared option as a keyword
argument. These functions fill the declared defaults, check the names and call the domain, so Python
code and the quickstart never go through the command line; the CLI passes what it parsed::

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

__all__ = ["make_data", "import_data", "domain_options", "parse_domain_options"]


def domain_options(
    add_arguments: Callable[[argparse.ArgumentParser], None], required: list[str], options: dict[str, Any], what: str
) -> dict[str, Any]:
    """The keyword arguments of a domain's ``make``/``import_``: its declared defaults, then ``options``.

    Parameters
    ----------
    add_arguments : callable
        The domain's ``add_make_arguments`` or ``add_import_arguments``.
    required : list of str
        Command-line form of the required arguments (``["--out", "f.h5"]``, a positional input).
    options : dict
        Keyword values (names as the domain takes them: ``voxel_size`` for ``--voxel-size``),
        already of the declared types.
    what : str
        The command, for messages (``physgan data make calo``).

    Raises
    ------
    ConfigError
        An option the domain does not declare (with the closest declared one).
    """
    known = parse_domain_options(add_arguments, required, what)
    for key, value in options.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; its options: {', '.join(sorted(known))}"
            raise ConfigError(f"{what} has no option '{key}'{hint}")
        known[key] = value
    return known


def parse_domain_options(add_arguments: Callable[[argparse.ArgumentParser], None], argv: list[str], what: str) -> dict[str, Any]:
    """Command-line arguments (a dataset card's ``convert_args``, the required ones) as a domain's keyword arguments.

    Raises
    ------
    ConfigError
        When the domain's options refuse ``argv`` (argparse's own message is printed above).
    """
    parser = argparse.ArgumentParser(prog=what)
    add_arguments(parser)
    try:
        return vars(parser.parse_args(argv))
    except SystemExit as err:
        raise ConfigError(f"{what}: cannot use the arguments {argv}") from err


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
    values = domain_options(dom.add_make_arguments, ["--out", str(out)], options, f"physgan data make {domain}")
    return Path(dom.make(**values))


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
    what = f"physgan data import {domain}"
    values = domain_options(dom.add_import_arguments, [str(source), "--out", str(out)], options, what)
    return Path(dom.import_(**values))
