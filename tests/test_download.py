"""Dataset cards and the downloader, against a local HTTP server (there is no internet here)."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from physgan.errors import ConfigError, DataError, PhysganError
from physgan.io import download as dl

REPO_CARDS = Path(__file__).resolve().parents[1] / "datasets"
CONTENT = np.random.default_rng(0).integers(0, 256, size=200_000, dtype=np.uint8).tobytes()  # ~200 kB, fixed seed


# ---------------------------------------------------------------------------------------------
# a tiny HTTP server with hand-written Range support and a mode that ignores Range
# ---------------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    honour_range = True
    truncate_after: int | None = None  # close the connection after this many body bytes
    log: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        return

    def do_GET(self):  # noqa: N802 - http.server API
        body = self.files.get(self.path)
        entry = {"path": self.path, "range": self.headers.get("Range"), "status": None, "sent": 0}
        self.log.append(entry)
        if body is None:
            entry["status"] = 404
            self.send_error(404, "Not Found")
            return
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and self.honour_range:
            start = int(m.group(1))
            if start >= len(body):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            chunk = body[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            chunk = body
            self.send_response(200)
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if self.truncate_after is not None:
            chunk = chunk[: self.truncate_after]
            self.close_connection = True
        # recorded before the body goes out: the client may finish reading (and the test assert) before
        # this thread runs again, a race that loaded machines lost
        entry["status"] = 206 if (m and self.honour_range) else 200
        entry["sent"] = len(chunk)
        self.wfile.write(chunk)


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"files": {}, "log": [], "honour_range": True, "truncate_after": None})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    handler.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _card(name: str, files: list[dict], **extra) -> dict:
    card = {
        "name": name,
        "title": f"test card {name}",
        "domain": "array",
        "doi": None,
        "layout": "array",
        "convert": None,
        "licence": "CC0",
        "citation": "none",
        "notes": "test",
        "files": files,
    }
    card.update(extra)
    return card


@pytest.fixture
def cards(tmp_path, monkeypatch, server):
    """A temporary card folder (PHYSGAN_DATASETS) with cards pointing at the local server."""
    d = tmp_path / "cards"
    d.mkdir()
    server.files["/tiny.bin"] = CONTENT
    server.files["/other.bin"] = CONTENT[::-1]
    sha = hashlib.sha256(CONTENT).hexdigest()
    md5 = hashlib.md5(CONTENT).hexdigest()
    specs = {
        "tiny": [{"name": "tiny.bin", "url": f"{server.base}/tiny.bin", "size_bytes": len(CONTENT), "checksum": f"sha256:{sha}"}],
        "tiny-md5": [{"name": "tiny.bin", "url": f"{server.base}/tiny.bin", "size_bytes": None, "checksum": f"md5:{md5}"}],
        "nochecksum": [{"name": "tiny.bin", "url": f"{server.base}/tiny.bin", "size_bytes": None, "checksum": None}],
        # the server sends other bytes than the card's checksum describes: a corrupted download
        "corrupt": [{"name": "tiny.bin", "url": f"{server.base}/other.bin", "size_bytes": None, "checksum": f"sha256:{sha}"}],
        "missing": [{"name": "gone.bin", "url": f"{server.base}/gone.bin", "size_bytes": None, "checksum": None}],
        "multi": [
            {"name": "tiny.bin", "url": f"{server.base}/tiny.bin", "size_bytes": len(CONTENT), "checksum": f"md5:{md5}"},
            {
                "name": "other.bin",
                "url": f"{server.base}/other.bin",
                "size_bytes": len(CONTENT),
                "checksum": f"md5:{hashlib.md5(CONTENT[::-1]).hexdigest()}",
            },
        ],
    }
    for name, files in specs.items():
        (d / f"{name}.yaml").write_text(yaml.safe_dump(_card(name, files)))
    monkeypatch.setenv(dl.DATASETS_ENV, str(d))
    return d


# ---------------------------------------------------------------------------------------------
# downloading
# ---------------------------------------------------------------------------------------------
def test_download_verifies_and_reports_progress(cards, server, tmp_path, capsys):
    out = tmp_path / "data"
    paths = dl.download("tiny", out, progress="lines")
    assert paths == [out / "tiny.bin"]
    assert (out / "tiny.bin").read_bytes() == CONTENT
    assert not (out / "tiny.bin.part").exists()
    err = capsys.readouterr().err
    assert "tiny.bin: downloading of 0.2 MB" in err
    assert "100%" in err and "sha256 verified" in err
    assert [e["status"] for e in server.log] == [200]


def test_md5_card_and_skip_when_present(cards, server, tmp_path, capsys):
    out = tmp_path / "data"
    dl.download("tiny-md5", out, progress=False)
    assert (out / "tiny.bin").read_bytes() == CONTENT
    n_requests = len(server.log)
    paths = dl.download("tiny-md5", out, progress="lines")
    assert paths == [out / "tiny.bin"]
    assert len(server.log) == n_requests, "a present, verified file must not be fetched again"
    assert "already present (md5 verified)" in capsys.readouterr().err


def test_resume_partial_file_with_range(cards, server, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    cut = 70_001
    (out / "tiny.bin.part").write_bytes(CONTENT[:cut])
    dl.download("tiny", out, progress=False)
    assert (out / "tiny.bin").read_bytes() == CONTENT
    (req,) = server.log
    assert req["range"] == f"bytes={cut}-"
    assert req["status"] == 206
    assert req["sent"] == len(CONTENT) - cut  # only the rest was transferred


def test_resume_when_server_ignores_range(cards, server, tmp_path, capsys):
    server.honour_range = False
    out = tmp_path / "data"
    out.mkdir()
    (out / "tiny.bin.part").write_bytes(CONTENT[:50_000])
    dl.download("tiny", out, progress="lines")
    assert (out / "tiny.bin").read_bytes() == CONTENT  # restarted, not appended twice
    (req,) = server.log
    assert req["range"] == "bytes=50000-" and req["status"] == 200 and req["sent"] == len(CONTENT)
    assert "ignored the range request" in capsys.readouterr().err


def test_interrupted_transfer_keeps_part_and_resumes(cards, server, tmp_path):
    out = tmp_path / "data"
    server.truncate_after = 60_000
    with pytest.raises(PhysganError, match=r"(connection closed|connection lost).*kept: re-run"):
        dl.download("tiny", out, progress=False)
    assert (out / "tiny.bin.part").read_bytes() == CONTENT[:60_000]
    assert not (out / "tiny.bin").exists()
    server.truncate_after = None
    dl.download("tiny", out, progress=False)
    assert (out / "tiny.bin").read_bytes() == CONTENT
    assert server.log[-1]["range"] == "bytes=60000-" and server.log[-1]["sent"] == len(CONTENT) - 60_000


def test_progress_bar_and_auto_mode(cards, server, tmp_path, capsys):
    dl.download("tiny", tmp_path / "a", progress="bar")
    err = capsys.readouterr().err
    assert "tiny.bin" in err and "100%" in err and "|" in err  # a tqdm bar
    dl.download("tiny", tmp_path / "b", progress=None)  # stderr is not a TTY under pytest: plain lines
    err = capsys.readouterr().err
    assert "tiny.bin: downloading" in err and "|" not in err


def test_complete_part_is_not_refetched(cards, server, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "tiny.bin.part").write_bytes(CONTENT)  # complete (card publishes the size)
    dl.download("tiny", out, progress=False)
    assert (out / "tiny.bin").read_bytes() == CONTENT
    assert server.log == []


def test_complete_part_without_size_gets_416_and_is_kept(cards, server, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "tiny.bin.part").write_bytes(CONTENT)  # card 'tiny-md5' has no size: the server answers 416
    dl.download("tiny-md5", out, progress=False)
    assert (out / "tiny.bin").read_bytes() == CONTENT
    assert [e["status"] for e in server.log] == [416]


def test_checksum_mismatch_removes_download(cards, server, tmp_path):
    out = tmp_path / "data"
    with pytest.raises(PhysganError, match=r"checksum mismatch.*expected sha256 .*removed"):
        dl.download("corrupt", out, progress=False)
    assert not (out / "tiny.bin").exists()
    assert not (out / "tiny.bin.part").exists()


def test_present_file_with_wrong_checksum_needs_overwrite(cards, server, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "tiny.bin").write_bytes(b"not the data")
    with pytest.raises(PhysganError, match="does not match.*--overwrite"):
        dl.download("tiny", out, progress=False)
    dl.download("tiny", out, progress=False, overwrite=True)
    assert (out / "tiny.bin").read_bytes() == CONTENT


def test_no_published_checksum_warns_and_records_sha256(cards, server, tmp_path):
    out = tmp_path / "data"
    with pytest.warns(dl.ChecksumWarning, match="could NOT verify"):
        dl.download("nochecksum", out, progress=False)
    record = (out / "tiny.bin.sha256").read_text().split()
    assert record == [hashlib.sha256(CONTENT).hexdigest(), "tiny.bin"]
    # a later change of the file is detected against the recorded digest
    (out / "tiny.bin").write_bytes(CONTENT[:-1])
    with pytest.raises(PhysganError, match="does not match"):
        dl.download("nochecksum", out, progress=False)


def test_multi_file_card_and_base_url_override(cards, server, tmp_path):
    server.files["/mirror/tiny.bin"] = CONTENT
    server.files["/mirror/other.bin"] = CONTENT[::-1]
    out = tmp_path / "data"
    paths = dl.download("multi", out, progress=False, url_override=f"{server.base}/mirror/")
    assert [p.name for p in paths] == ["tiny.bin", "other.bin"]
    assert (out / "other.bin").read_bytes() == CONTENT[::-1]
    assert [e["path"] for e in server.log] == ["/mirror/tiny.bin", "/mirror/other.bin"]


def test_unknown_dataset_lists_known_names(cards):
    with pytest.raises(PhysganError, match=r"unknown dataset 'nope'.*known datasets: .*tiny"):
        dl.load_card("nope")
    with pytest.raises(PhysganError, match="unknown dataset"):
        dl.download("nope", "/tmp/never-created-physgan")


def test_http_404_is_a_clear_error(cards, server, tmp_path):
    with pytest.raises(PhysganError, match=r"HTTP error 404.*gone\.bin.*--url"):
        dl.download("missing", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "gone.bin").exists()


def test_no_network_explains_manual_placement(cards, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PhysganError, match=r"may have no internet.*copy it to .*tiny\.bin"):
        dl.download("tiny", tmp_path / "data", progress=False, url_override=f"http://127.0.0.1:{port}/tiny.bin")


def test_bad_cards_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(dl.DATASETS_ENV, str(tmp_path))
    f = {"name": "a.bin", "url": "https://example.org/a.bin", "size_bytes": None, "checksum": "md5:1234"}
    (tmp_path / "badsum.yaml").write_text(yaml.safe_dump(_card("badsum", [f])))
    with pytest.raises(ConfigError, match="not a valid md5"):
        dl.load_card("badsum")
    card = _card("nolicence", [dict(f, checksum=None)])
    del card["licence"]
    (tmp_path / "nolicence.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ConfigError, match="missing required field.*licence"):
        dl.load_card("nolicence")
    (tmp_path / "wrongname.yaml").write_text(yaml.safe_dump(_card("other", [dict(f, checksum=None)])))
    with pytest.raises(ConfigError, match="'name' is 'other'"):
        dl.load_card("wrongname")


# ---------------------------------------------------------------------------------------------
# the repository's cards
# ---------------------------------------------------------------------------------------------
def test_every_repository_card_parses(monkeypatch):
    monkeypatch.delenv(dl.DATASETS_ENV, raising=False)
    assert dl.cards_dir().resolve() == REPO_CARDS.resolve()
    cards = dl.list_cards()
    names = {c.name for c in cards}
    expected = {
        "calogan-eplus", "calogan-gamma", "calogan-piplus",
        "calochallenge-ds1-photons", "calochallenge-ds1-pions", "calochallenge-ds2", "calochallenge-ds3",
    }  # fmt: skip
    assert expected <= names
    assert any(c.domain == "nbody" for c in cards) and any(c.domain == "micro" for c in cards)
    for c in cards:
        raw = yaml.safe_load(c.path.read_text())
        for key in dl.REQUIRED_FIELDS:
            assert key in raw, (c.name, key)
        assert c.sources, f"{c.name}: a card must say where its values came from"
        assert c.convert is None or c.convert in dl.converters(), c.name
        for f in c.files:
            assert f.url.startswith("https://"), (c.name, f.name)
    by_name = {c.name: c for c in cards}
    assert by_name["calogan-gamma"].doi == "10.17632/pvn3xc3wy5.1"
    assert by_name["calochallenge-ds2"].files[0].checksum == ("md5", "e590333e9a2da51b258288d74bd8357a")
    assert len(by_name["calochallenge-ds3"].files) == 4


def test_repository_berea_card_matches_the_real_file(shared_data, server, tmp_path, monkeypatch):
    """The card's size and sha256 verify the real Berea zip, served from a local mirror."""
    monkeypatch.delenv(dl.DATASETS_ENV, raising=False)
    real = (shared_data / "micro" / "berea_sandstone_400.zip").read_bytes()
    server.files["/berea.zip"] = real
    out = tmp_path / "data"
    paths = dl.download("berea-sandstone", out, url_override=f"{server.base}/berea.zip", progress=False, convert=False)
    assert paths == [out / "berea.zip"]
    assert len(real) == dl.load_card("berea-sandstone").files[0].size_bytes


# ---------------------------------------------------------------------------------------------
# converters
# ---------------------------------------------------------------------------------------------
def _camels_card(tmp_path: Path, per: int = 3) -> dl.Card:
    return dl.Card(
        name="camels-test", title="t", domain="nbody", doi=None, files=[], layout="array", convert="camels_cmd_maps",
        licence="x", citation="x", notes="x", convert_args=[f"maps_per_sim={per}", "box_size_mpc_h=25"], path=tmp_path / "c.yaml",
    )  # fmt: skip


def test_camels_converter_writes_array_layout(tmp_path):
    from physgan.io.hdf5 import open_source, read_all
    from physgan.io.layout import ArrayLayout

    rng = np.random.default_rng(1)
    maps = rng.lognormal(size=(6, 8, 8)).astype(np.float32)  # 2 simulations x 3 maps
    params = np.array([[0.3, 0.8, 1, 1, 1, 1], [0.1, 0.6, 2, 2, 2, 2]])
    mp, pp = tmp_path / "Maps_Mtot_Nbody_X_LH_z=0.00.npy", tmp_path / "params.txt"
    np.save(mp, maps)
    np.savetxt(pp, params)
    (out,) = dl.convert_camels_cmd_maps(_camels_card(tmp_path), [mp, pp], tmp_path, progress=False)
    src = open_source(out, ArrayLayout())  # the instance: no dependence on domain plug-ins being importable
    with h5py.File(out) as f:
        assert f.attrs["physgan_layout"] == "array"
    assert src.condition_names == ["omega_m", "sigma8"]
    x, c = read_all(src)
    src.close()
    np.testing.assert_array_equal(x, maps)
    np.testing.assert_allclose(c, np.repeat(params[:, :2], 3, axis=0).astype(np.float32))
    assert src.header.attrs["domain"] == "nbody" and src.header.attrs["box_size_mpc_h"] == 25.0


def test_camels_converter_rejects_row_mismatch(tmp_path):
    mp, pp = tmp_path / "m.npy", tmp_path / "p.txt"
    np.save(mp, np.ones((7, 4, 4), np.float32))
    np.savetxt(pp, np.ones((2, 6)))
    with pytest.raises(DataError, match="7 maps do not match 2 parameter rows x 3"):
        dl.convert_camels_cmd_maps(_camels_card(tmp_path), [mp, pp], tmp_path, progress=False)


def test_micro_converter_calls_importer_with_card_args(tmp_path, monkeypatch):
    calls = []

    class FakeDomain:  # the registry's micro domain, as far as the converter uses it
        @staticmethod
        def add_import_arguments(parser):
            parser.add_argument("src")
            parser.add_argument("--out")
            parser.add_argument("--crop", type=int)

        @staticmethod
        def import_(*, src, out, crop):
            calls.append((src, out, crop))
            Path(out).write_bytes(b"h5")
            return Path(out)

    monkeypatch.setattr(dl, "_importer", lambda card: FakeDomain)
    zpath = tmp_path / "vol.zip"
    zpath.write_bytes(b"zip")
    card = dl.Card(
        name="m", title="t", domain="micro", doi=None, files=[], layout="micro", convert="micro_zip_tiff",
        licence="x", citation="x", notes="x", convert_args=["--crop", "32"],
    )  # fmt: skip
    (out,) = dl.convert_micro_zip_tiff(card, [zpath], tmp_path, progress=False)
    assert calls == [(str(zpath), str(tmp_path / "vol.h5"), 32)] and out.exists()
    bad = dl.Card(**{**card.__dict__, "convert_args": ["--no-such-flag"]})
    (tmp_path / "vol.h5").unlink()
    with pytest.raises(PhysganError, match="rejected the arguments"):
        dl.convert_micro_zip_tiff(bad, [zpath], tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------
# CLI hooks
# ---------------------------------------------------------------------------------------------
def test_cli_list_and_download(cards, server, tmp_path, capsys):
    parser = dl.add_arguments(argparse.ArgumentParser())
    assert dl.main(parser.parse_args(["--list"])) == 0
    listing = capsys.readouterr().out
    assert re.search(r"^tiny\s+array\s+array\s+0\.2 MB\s+test card tiny$", listing, re.M)
    out = tmp_path / "cli"
    assert dl.main(parser.parse_args(["tiny", "--dir", str(out)])) == 0
    assert capsys.readouterr().out.strip() == str(out / "tiny.bin")
    with pytest.raises(ConfigError, match="--dir"):
        dl.main(parser.parse_args(["tiny"]))


def test_card_domain_and_layout_come_from_the_registries(tmp_path, monkeypatch):
    import physgan.domains.base as base
    from physgan.domains.base import Domain, StandardiseTransform, register_domain

    path = tmp_path / "mine.yaml"
    with pytest.raises(ConfigError, match=r"unknown domain 'mydom' \(known: array, calo, micro, nbody"):
        dl._parse_card(_card("mine", [], domain="mydom"), path)
    with pytest.raises(ConfigError, match=r"unknown layout 'npy' \(known: .*calogan"):
        dl._parse_card(_card("mine", [], layout="npy"), path)
    monkeypatch.setattr(base, "_DOMAINS", dict(base._DOMAINS))  # the registration ends with the test
    register_domain(Domain("mydom", "a user domain", ["array"], lambda o: StandardiseTransform(), None, None))
    with pytest.raises(ConfigError, match="'files'"):  # past the domain check: a user's domain is known
        dl._parse_card(_card("mine", [], domain="mydom"), path)
