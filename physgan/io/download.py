"""Dataset cards and ``physgan data download``: fetch, resume, verify, convert.

A *dataset card* is a small YAML file in the repository's ``datasets/`` folder
(or in the folder named by the environment variable ``PHYSGAN_DATASETS``) that
describes one public dataset: DOI, file URLs, sizes, published checksums,
layout, licence, citation, and where each of those facts came from.

:func:`download` fetches every file of a card over HTTP(S) with :mod:`urllib`:

- it streams into ``<file>.part`` and *resumes* an existing ``.part`` with an
  HTTP ``Range`` request (a server answering ``206`` sends only the rest; one
  answering ``200`` ignored the range, so the part is restarted from zero);
- it shows a tqdm bar when stderr is a terminal, else one plain line per ~10 %;
- it verifies the card's checksum (md5 or sha256); a mismatch removes the bad
  download and raises; a card without a published checksum gets a clear
  warning and the computed sha256 is recorded beside the file
  (``<file>.sha256``) so later runs can at least detect changes;
- it renames the verified ``.part`` into place atomically (fsync + rename);
- it skips files already present and verified;
- finally it runs the card's converter, if any (see :func:`register_converter`).

Card format (``datasets/<name>.yaml``)::

    name: calochallenge-ds2          # must equal the file stem
    title: ...
    domain: calo                     # calo | nbody | micro | array
    doi: 10.5281/zenodo.6366270      # or null
    homepage: https://...            # optional
    layout: calochallenge            # layout of the files (after conversion if convert is set)
    convert: null                    # or the name of a registered converter
    convert_args: []                 # optional extra arguments for the converter
    licence: CC-BY-4.0               # or a sentence when not stated by the publisher
    citation: ...
    notes: ...
    files:
      - name: dataset_2_1.hdf5
        url: https://zenodo.org/records/6366271/files/dataset_2_1.hdf5
        size_bytes: null             # int when published, else null
        checksum: md5:e590333e...    # 'md5:<hex>' / 'sha256:<hex>' or null
        role: train                  # optional
    sources: [...]                   # where each value above came from
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from physgan.errors import ConfigError, DataError, PhysganError
from physgan.progress import Progress

__all__ = [
    "DATASETS_ENV",
    "Card",
    "FileSpec",
    "cards_dir",
    "load_card",
    "list_cards",
    "download",
    "register_converter",
    "converters",
    "convert_camels_cmd_maps",
    "convert_micro_zip_tiff",
    "file_digest",
    "add_arguments",
    "main",
    "ChecksumWarning",
]

DATASETS_ENV = "PHYSGAN_DATASETS"
CHUNK_BYTES = 1 << 20  # 1 MiB per read
USER_AGENT = "physgan-download/0.1 (+https://github.com/physgan)"
REQUIRED_FIELDS = ("name", "title", "domain", "doi", "files", "layout", "convert", "licence", "citation", "notes")
REQUIRED_FILE_FIELDS = ("name", "url", "size_bytes", "checksum")
HASH_HEX_LEN = {"md5": 32, "sha256": 64}


class ChecksumWarning(UserWarning):
    """A file was downloaded that no published checksum could verify."""


# ---------------------------------------------------------------------------------------------
# cards
# ---------------------------------------------------------------------------------------------
@dataclass
class FileSpec:
    """One file of a dataset card.

    Attributes
    ----------
    name : str
        File name on disk (no directories).
    url : str
        Download URL.
    size_bytes : int or None
        Published size in bytes; None when no source states it.
    checksum : tuple (algorithm, hex digest) or None
        Published checksum (``md5`` or ``sha256``); None when not published.
    role : str
        Free text (``train``, ``eval``, ``labels``, ...).
    """

    name: str
    url: str
    size_bytes: int | None
    checksum: tuple[str, str] | None
    role: str = ""


@dataclass
class Card:
    """A parsed dataset card (see the module docstring for the YAML format)."""

    name: str
    title: str
    domain: str
    doi: str | None
    files: list[FileSpec]
    layout: str
    convert: str | None
    licence: str
    citation: str
    notes: str
    homepage: str | None = None
    convert_args: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def size_bytes(self) -> int | None:
        """Total published size, or None when any file's size is unknown."""
        sizes = [f.size_bytes for f in self.files]
        return None if any(s is None for s in sizes) else int(sum(sizes))


def cards_dir() -> Path:
    """The folder holding the dataset cards.

    ``$PHYSGAN_DATASETS`` when set, else ``datasets/`` beside the ``physgan``
    package (the repository root in a source checkout).
    """
    env = os.environ.get(DATASETS_ENV)
    if env:
        return Path(env).expanduser()
    import physgan

    return Path(physgan.__file__).resolve().parents[1] / "datasets"


def _parse_checksum(value: Any, where: str) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where}: checksum must be 'md5:<hex>', 'sha256:<hex>' or null, got {value!r}")
    algo, digest = value.split(":", 1)
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in HASH_HEX_LEN:
        raise ConfigError(f"{where}: unsupported checksum algorithm '{algo}' (use md5 or sha256)")
    if len(digest) != HASH_HEX_LEN[algo] or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ConfigError(f"{where}: '{value}' is not a valid {algo} hex digest ({HASH_HEX_LEN[algo]} hex digits)")
    return algo, digest


def _parse_card(data: Any, path: Path) -> Card:
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a dataset card must be a YAML mapping")
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing required field(s): {', '.join(missing)}")
    if data["name"] != path.stem:
        raise ConfigError(f"{where}: field 'name' is '{data['name']}' but the file is called '{path.name}'")
    for key in ("title", "domain", "layout", "licence", "citation", "notes"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise ConfigError(f"{where}: field '{key}' must be a non-empty string")
    from physgan.domains.base import domains
    from physgan.io.layout import layouts

    known_domains, known_layouts = sorted(domains()), sorted(layouts())  # the registries, user additions included
    if data["domain"] not in known_domains:
        raise ConfigError(f"{where}: unknown domain '{data['domain']}' (known: {', '.join(known_domains)})")
    if data["layout"] not in known_layouts:
        raise ConfigError(f"{where}: unknown layout '{data['layout']}' (known: {', '.join(known_layouts)})")
    if data["doi"] is not None and not (isinstance(data["doi"], str) and data["doi"].startswith("10.")):
        raise ConfigError(f"{where}: 'doi' must be null or a DOI string starting with '10.', got {data['doi']!r}")
    if data["convert"] is not None and not isinstance(data["convert"], str):
        raise ConfigError(f"{where}: 'convert' must be a converter name or null")
    files = data["files"]
    if not isinstance(files, list) or not files:
        raise ConfigError(f"{where}: 'files' must be a non-empty list")
    specs: list[FileSpec] = []
    for i, entry in enumerate(files):
        fwhere = f"{where}, files[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{fwhere}: each file must be a mapping")
        fmissing = [k for k in REQUIRED_FILE_FIELDS if k not in entry]
        if fmissing:
            raise ConfigError(f"{fwhere}: missing field(s): {', '.join(fmissing)}")
        name = entry["name"]
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ConfigError(f"{fwhere}: 'name' must be a plain file name, got {name!r}")
        url = entry["url"]
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            raise ConfigError(f"{fwhere}: 'url' must be an http(s) URL, got {url!r}")
        size = entry["size_bytes"]
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise ConfigError(f"{fwhere}: 'size_bytes' must be a positive integer or null, got {size!r}")
        specs.append(FileSpec(name, url, size, _parse_checksum(entry["checksum"], fwhere), str(entry.get("role") or "")))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: file names are not unique: {names}")
    convert_args = data.get("convert_args") or []
    if not isinstance(convert_args, list) or not all(isinstance(a, (str, int, float)) for a in convert_args):
        raise ConfigError(f"{where}: 'convert_args' must be a list of strings")
    sources = data.get("sources") or []
    if not isinstance(sources, list):
        raise ConfigError(f"{where}: 'sources' must be a list")
    return Card(
        name=data["name"],
        title=data["title"].strip(),
        domain=data["domain"],
        doi=data["doi"],
        files=specs,
        layout=data["layout"],
        convert=data["convert"],
        licence=data["licence"].strip(),
        citation=data["citation"].strip(),
        notes=data["notes"].strip(),
        homepage=data.get("homepage"),
        convert_args=[str(a) for a in convert_args],
        sources=[str(s) for s in sources],
        path=path,
    )


def _read_card(path: Path) -> Card:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read dataset card: {err.strerror or err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    return _parse_card(data, path)


def _card_paths() -> list[Path]:
    d = cards_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def list_cards() -> list[Card]:
    """All dataset cards, sorted by name.

    Returns
    -------
    list of Card
        Parsed cards from :func:`cards_dir`; a malformed card raises ConfigError.
    """
    return sorted((_read_card(p) for p in _card_paths()), key=lambda c: c.name)


def load_card(name: str) -> Card:
    """Load the dataset card called ``name``.

    Parameters
    ----------
    name : str
        Card name (the YAML file's stem, e.g. ``calochallenge-ds2``).

    Returns
    -------
    Card

    Raises
    ------
    PhysganError
        When no card has that name; the message lists the known names.
    """
    for p in _card_paths():
        if p.stem == name:
            return _read_card(p)
    known = ", ".join(p.stem for p in _card_paths()) or f"(none: no cards in {cards_dir()})"
    raise PhysganError(f"unknown dataset '{name}'; known datasets: {known}")


# ---------------------------------------------------------------------------------------------
# hashing and progress
# ---------------------------------------------------------------------------------------------
def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : path-like
        File to hash.
    algorithm : {'md5', 'sha256'}
        Hash algorithm.

    Returns
    -------
    str
        Lower-case hex digest.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _say(msg: str, progress: Any) -> None:
    if progress is not False and progress != "none":
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
def _network_error(url: str, target: Path, reason: Any, card: Card) -> PhysganError:
    where = f"doi:{card.doi}" if card.doi else (card.homepage or url)
    return PhysganError(
        f"{url}: could not connect ({reason}). This machine may have no internet access. "
        f"To place the file by hand, download it elsewhere (from {url} or the landing page {where}), "
        f"copy it to {target}, then re-run 'physgan data download {card.name} --dir {target.parent}' "
        f"to verify its checksum and convert it."
    )


def _content_range_start(value: str | None) -> tuple[int | None, int | None]:
    """Parse ``bytes a-b/N`` into (a, N); None where absent or '*'."""
    if not value:
        return None, None
    m = re.match(r"\s*bytes\s+(\d+|\*)(?:-(\d+))?/(\d+|\*)", value)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) != "*" else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def _fetch(spec: FileSpec, url: str, part: Path, card: Card, progress: Any, timeout: float, _retry: bool = True) -> None:
    """Download ``url`` into ``part``, resuming from its current size when possible."""
    offset = part.stat().st_size if part.exists() else 0
    if spec.size_bytes is not None and offset > spec.size_bytes:
        _say(f"{spec.name}: partial file is larger than the published size; restarting", progress)
        part.unlink()
        offset = 0
    if spec.size_bytes is not None and offset == spec.size_bytes:
        return  # complete already; the checksum decides
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            _, total = _content_range_start(err.headers.get("Content-Range"))
            err.close()
            if total is not None and total == offset:
                return  # the part is already complete
            if _retry:
                _say(f"{spec.name}: server refused to resume (HTTP 416); restarting from zero", progress)
                part.unlink()
                return _fetch(spec, url, part, card, progress, timeout, _retry=False)
        raise PhysganError(
            f"{url}: HTTP error {err.code} ({err.reason}) while downloading '{spec.name}' of dataset '{card.name}'"
            + ("; the URL may have moved: check the card's DOI landing page or pass --url" if err.code in (404, 410) else "")
        ) from err
    except urllib.error.URLError as err:
        raise _network_error(url, part.with_name(spec.name), err.reason, card) from err
    except (TimeoutError, ConnectionError) as err:
        raise _network_error(url, part.with_name(spec.name), err, card) from err

    with resp:
        status = getattr(resp, "status", 200)
        mode = "ab"
        if offset and status == 206:
            start, _ = _content_range_start(resp.headers.get("Content-Range"))
            if start is not None and start != offset:
                raise PhysganError(f"{url}: server resumed at byte {start}, expected {offset}; delete {part} and retry")
        elif offset:
            _say(f"{spec.name}: server ignored the range request (HTTP {status}); restarting from zero", progress)
            offset = 0
            mode = "wb"
        length = resp.headers.get("Content-Length")
        total = spec.size_bytes
        if total is None and length is not None and length.isdigit():
            total = offset + int(length)
        bar = Progress(total, spec.name, "B", progress, initial=offset, unknown_every=16 * CHUNK_BYTES)
        if bar.mode == "lines":
            start = f" (resuming at {_mb(offset)})" if offset else ""
            bar.write(f"{spec.name}: downloading{f' of {_mb(total)}' if total else ''}{start}")
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        block = resp.read(CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as err:
                        raise PhysganError(
                            f"{url}: connection lost after {_mb(bar.done)} ({err}); the partial file {part} is kept: "
                            f"re-run the same command to resume"
                        ) from err
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
        finally:
            bar.close()
        if length is not None and length.isdigit() and bar.done - offset < int(length):
            raise PhysganError(
                f"{url}: connection closed after {bar.done - offset} of {length} bytes; "
                f"the partial file {part} is kept: re-run the same command to resume"
            )


def _verify(spec: FileSpec, path: Path) -> tuple[bool, str]:
    """(ok, digest) against the published checksum, or the recorded sha256 when none is published."""
    if spec.checksum is not None:
        algo, want = spec.checksum
        got = file_digest(path, algo)
        return got == want, got
    record = path.with_name(path.name + ".sha256")
    got = file_digest(path, "sha256")
    if record.exists():
        words = record.read_text().split()
        want = words[0].lower() if words else ""
        return got == want, got
    return True, got


def _record_sha256(final: Path, digest: str) -> Path:
    from physgan.io.atomic import atomic_output

    record = final.with_name(final.name + ".sha256")
    with atomic_output(record, overwrite=True) as tmp:
        tmp.write_text(f"{digest}  {final.name}\n")
    return record


def _download_file(card: Card, spec: FileSpec, url: str, directory: Path, progress: Any, overwrite: bool, timeout: float) -> Path:
    from physgan.io.atomic import fsync_directory

    final = directory / spec.name
    part = directory / (spec.name + ".part")
    if final.exists():
        if overwrite:
            final.unlink()
            with contextlib.suppress(FileNotFoundError):
                final.with_name(final.name + ".sha256").unlink()
        else:
            ok, got = _verify(spec, final)
            if ok:
                how = f"{spec.checksum[0]} verified" if spec.checksum else "NOT verified: the card publishes no checksum"
                _say(f"{spec.name}: already present ({how}); skipped", progress)
                return final
            want = f"{spec.checksum[0]} {spec.checksum[1]}" if spec.checksum else "the sha256 recorded at first download"
            raise PhysganError(
                f"{final}: exists but its checksum does not match (expected {want}, got {got}); "
                f"pass --overwrite (overwrite=True) to download it again"
            )
    if overwrite and part.exists():
        part.unlink()
    _fetch(spec, url, part, card, progress, timeout)
    if spec.size_bytes is not None and part.stat().st_size != spec.size_bytes:
        got_size = part.stat().st_size
        part.unlink()
        raise PhysganError(
            f"{url}: downloaded {got_size} bytes but the card says '{spec.name}' has {spec.size_bytes}; "
            f"the bad download was removed; re-run to fetch it again"
        )
    if spec.checksum is not None:
        algo, want = spec.checksum
        got = file_digest(part, algo)
        if got != want:
            part.unlink()
            raise PhysganError(
                f"{url}: checksum mismatch for '{spec.name}' of dataset '{card.name}': expected {algo} {want}, got {got}; "
                f"the corrupted download was removed; re-run to fetch it again"
            )
        os.replace(part, final)
        fsync_directory(directory)
        _say(f"{spec.name}: {algo} verified", progress)
        return final
    digest = file_digest(part, "sha256")
    os.replace(part, final)
    fsync_directory(directory)
    record = _record_sha256(final, digest)
    msg = (
        f"{final}: could NOT verify this file: the dataset card '{card.name}' has no published checksum for it. "
        f"Its sha256 is {digest} (recorded in {record.name}); compare it with the publisher's if you can."
    )
    warnings.warn(msg, ChecksumWarning, stacklevel=3)
    _say(f"WARNING: {msg}", progress)
    return final


def _resolve_url(card: Card, spec: FileSpec, url_override: str | None) -> str:
    if not url_override:
        return spec.url
    if len(card.files) == 1 and not url_override.endswith("/"):
        return url_override
    return url_override.rstrip("/") + "/" + urllib.request.pathname2url(spec.name).lstrip("/")


def download(
    name: str,
    directory: str | os.PathLike,
    *,
    url_override: str | None = None,
    progress: Any = None,
    overwrite: bool = False,
    convert: bool = True,
    timeout: float = 60.0,
) -> list[Path]:
    """Download, verify and convert the dataset ``name`` into ``directory``.

    Parameters
    ----------
    name : str
        Dataset card name (see :func:`list_cards`).
    directory : path-like
        Destination folder (created if missing).
    url_override : str, optional
        Fetch from here instead of the card's URLs (a mirror, or a local
        server in tests). For a one-file card a full URL; a URL ending in
        ``/`` (or any URL for a multi-file card) is a base to which each file
        name is appended.
    progress : None, bool or {'bar', 'lines', 'none'}
        None: a tqdm bar when stderr is a terminal, else plain lines per ~10 %.
        True = 'lines', False = 'none'.
    overwrite : bool
        Download again even when files (or partial files) are present, and
        let the converter replace its outputs.
    convert : bool
        Run the card's converter after downloading (default True).
    timeout : float
        Socket timeout in seconds.

    Returns
    -------
    list of Path
        The downloaded files, followed by the converter's outputs.

    Raises
    ------
    PhysganError
        Unknown dataset, HTTP error, no network, size or checksum mismatch.
    """
    card = load_card(name)
    directory = Path(directory).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PhysganError(f"{directory}: cannot create download directory: {err.strerror or err}") from err
    paths = []
    for spec in card.files:
        url = _resolve_url(card, spec, url_override)
        paths.append(_download_file(card, spec, url, directory, progress, overwrite, timeout))
    outputs: list[Path] = []
    if convert and card.convert:
        fn = converters().get(card.convert)
        if fn is None:
            raise PhysganError(f"dataset '{card.name}': unknown converter '{card.convert}'; known: {', '.join(converters())}")
        outputs = list(fn(card, paths, directory, overwrite=overwrite, progress=progress))
    return paths + outputs


# ---------------------------------------------------------------------------------------------
# converters
# ---------------------------------------------------------------------------------------------
Converter = Callable[..., list[Path]]
_CONVERTERS: dict[str, Converter] = {}


def register_converter(name: str, fn: Converter) -> Converter:
    """Register a converter run after a download.

    Parameters
    ----------
    name : str
        Name used in a card's ``convert`` field.
    fn : callable
        ``fn(card, files, directory, *, overwrite, progress) -> list[Path]``:
        turns the downloaded ``files`` into physgan-readable HDF5 in
        ``directory`` and returns the paths it wrote.

    Returns
    -------
    callable
        ``fn`` (so it can be used as a decorator helper).
    """
    _CONVERTERS[name] = fn
    return fn


def converters() -> dict[str, Converter]:
    """All registered converters by name."""
    return dict(_CONVERTERS)


def _importer(card: Card) -> Any:
    """The domain (from the registry) whose importer converts the card's files."""
    from physgan.domains.base import get_domain

    dom = get_domain(card.domain)
    if dom.import_ is None or dom.add_import_arguments is None:
        raise PhysganError(f"dataset '{card.name}': domain '{card.domain}' has no importer")
    return dom


def convert_micro_zip_tiff(
    card: Card, files: list[Path], directory: Path, *, overwrite: bool = False, progress: Any = None
) -> list[Path]:
    """Micro-CT volumes shipped as a .zip holding one TIFF (or a bare TIFF) -> physgan micro HDF5.

    Calls the card's domain's importer (``Domain.import_``, keyword arguments) with the card's
    ``convert_args`` (command-line options of ``physgan data import <domain>``).

    Returns
    -------
    list of Path
        The HDF5 files written.
    """
    from physgan.datamake import parse_domain_options

    dom = _importer(card)
    outputs: list[Path] = []
    for src in files:
        if src.suffix.lower() not in (".zip", ".tif", ".tiff"):
            continue
        out = directory / (src.stem + ".h5")
        if out.exists() and not overwrite:
            _say(f"{out}: already converted; skipped (pass --overwrite to redo)", progress)
            outputs.append(out)
            continue
        argv = [str(src), "--out", str(out), *card.convert_args]
        try:
            options = parse_domain_options(dom.add_import_arguments, argv, f"physgan data import {card.domain}")
        except ConfigError as err:
            raise PhysganError(
                f"dataset '{card.name}': the {card.domain} importer rejected the arguments {argv} (convert_args in {card.path})"
            ) from err
        if overwrite and "overwrite" in options:
            options["overwrite"] = True
        dom.import_(**options)
        outputs.append(out)
    return outputs


def convert_camels_cmd_maps(
    card: Card, files: list[Path], directory: Path, *, overwrite: bool = False, progress: Any = None
) -> list[Path]:
    """CAMELS Multifield Dataset 2-D maps (``.npy``) + parameter table -> physgan ``array`` HDF5.

    The maps file holds ``(n_sims * maps_per_sim, ny, nx)`` float32 maps, the
    parameter table one row per simulation (``Omega_m``, ``sigma_8``, then
    four astrophysical parameters, unused here); consecutive ``maps_per_sim`` maps share one row
    (Villaescusa-Navarro et al. 2021, arXiv:2109.10915). The output keeps the
    maps as samples (units (Msun/h)/(Mpc/h)^2) with conditions ``omega_m`` and
    ``sigma8`` and attributes box size (Mpc/h), grid, redshift, provenance.

    Card ``convert_args`` (all optional): ``maps_per_sim=15``,
    ``box_size_mpc_h=25``, ``redshift=0``, ``field=Mtot``.

    Returns
    -------
    list of Path
        The HDF5 file written.
    """
    import numpy as np

    from physgan.io.hdf5 import SampleWriter
    from physgan.io.layout import ArrayLayout, Header

    opts = {"maps_per_sim": "15", "box_size_mpc_h": "25", "redshift": "0", "field": "Mtot"}
    for a in card.convert_args:
        if "=" not in a:
            raise ConfigError(f"{card.path}: convert_args entries must be key=value, got '{a}'")
        k, v = a.split("=", 1)
        if k not in opts:
            raise ConfigError(f"{card.path}: unknown convert_args key '{k}' for camels_cmd_maps (known: {', '.join(opts)})")
        opts[k] = v
    maps_path = next((p for p in files if p.suffix == ".npy"), None)
    params_path = next((p for p in files if p.suffix == ".txt"), None)
    if maps_path is None or params_path is None:
        raise DataError(str(directory), "camels_cmd_maps needs one .npy maps file and one .txt parameter table")
    out = directory / (maps_path.stem.replace("=", "") + ".h5")
    if out.exists() and not overwrite:
        _say(f"{out}: already converted; skipped (pass --overwrite to redo)", progress)
        return [out]
    try:
        maps = np.load(maps_path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise DataError(str(maps_path), f"not a readable .npy array: {err}") from err
    if maps.ndim != 3:
        raise DataError(str(maps_path), f"expected maps of shape (N, ny, nx), got {maps.shape}")
    try:
        params = np.loadtxt(params_path, ndmin=2)
    except ValueError as err:
        raise DataError(str(params_path), f"not a numeric table: {err}") from err
    if params.shape[1] < 2:
        raise DataError(str(params_path), f"expected at least 2 columns (Omega_m, sigma_8), got {params.shape[1]}")
    per = int(opts["maps_per_sim"])
    if per < 1 or len(maps) != per * len(params):
        raise DataError(
            str(maps_path),
            f"{len(maps)} maps do not match {len(params)} parameter rows x {per} maps per simulation (from {params_path.name})",
        )
    bad = np.flatnonzero(~np.isfinite(params[:, :2]).all(axis=1))
    if bad.size:
        raise DataError(str(params_path), "non-finite cosmological parameter", index=int(bad[0]))
    header = Header(
        n=len(maps),
        sample_shape=tuple(int(s) for s in maps.shape[1:]),
        condition_names=["omega_m", "sigma8"],
        condition_units=["", ""],
        attrs={
            "domain": "nbody",
            "dim": 2,
            "grid": int(maps.shape[-1]),
            "box_size_mpc_h": float(opts["box_size_mpc_h"]),
            "redshift": float(opts["redshift"]),
            "field": opts["field"],
            "source_dataset": card.name,
            "source_doi": card.doi or "",
            "source_files": ",".join(p.name for p in files),
            "maps_per_sim": per,
            "provenance": f"physgan data download {card.name} (converter camels_cmd_maps)",
        },
        chunk_rows=0,
        sample_units="(Msun/h)/(Mpc/h)^2",
        non_negative=True,
        dtype="float32",
    )
    block = max(per, (64 << 20) // max(maps[0].nbytes, 1) // per * per)
    # the layout instance (not its registry name) keeps conversion independent of the domain plug-ins
    with SampleWriter(out, ArrayLayout(), header, overwrite=True) as w:
        for start in range(0, len(maps), block):
            x = np.asarray(maps[start : start + block], dtype=np.float32)
            if not np.isfinite(x).all():
                i = start + int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
                raise DataError(str(maps_path), "map holds NaN or Inf", index=i)
            rows = np.arange(start, start + len(x)) // per
            w.append(x, params[rows, :2].astype(np.float32))
    return [out]


register_converter("micro_zip_tiff", convert_micro_zip_tiff)
register_converter("camels_cmd_maps", convert_camels_cmd_maps)


# ---------------------------------------------------------------------------------------------
# CLI hooks
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``NAME --dir D [--url URL] [--overwrite] [--no-convert] [--list]`` to ``parser``."""
    parser.add_argument("name", nargs="?", metavar="NAME", help="dataset card name (see --list)")
    parser.add_argument("--dir", dest="dir", metavar="D", help="destination folder (created if missing)")
    parser.add_argument("--url", metavar="URL", help="download from this URL (or base URL ending in '/') instead of the card's")
    parser.add_argument("--overwrite", action="store_true", help="download again and replace existing files")
    parser.add_argument("--no-convert", dest="convert", action="store_false", help="skip the card's converter")
    parser.add_argument("--list", action="store_true", help="list the known datasets and exit")
    return parser


def _fmt_size(card: Card) -> str:
    s = card.size_bytes
    if s is None:
        return "unknown"
    return f"{s / 1e9:.2f} GB" if s >= 1e9 else f"{s / 1e6:.1f} MB"


def main(args: argparse.Namespace) -> int:
    """Run ``physgan data download``; returns the exit status (PhysganError propagates to the CLI)."""
    if getattr(args, "list", False):
        cards = list_cards()
        if not cards:
            print(f"no dataset cards in {cards_dir()}")
            return 0
        width = max(len(c.name) for c in cards)
        for c in cards:
            print(f"{c.name:<{width}}  {c.domain:<5}  {c.layout:<13}  {_fmt_size(c):>9}  {c.title}")
        return 0
    if not args.name:
        raise ConfigError("give a dataset NAME (see 'physgan data download --list')")
    if not args.dir:
        raise ConfigError("give a destination folder with --dir D")
    paths = download(args.name, args.dir, url_override=args.url, overwrite=args.overwrite, convert=getattr(args, "convert", True))
    for p in paths:
        print(p)
    return 0
