"""The HTML report in a real browser (headless Chromium from Debian's ``chromium`` package; skipped where absent):
it renders, every image decodes, the verdict is on the first screen, and PASS/FAIL appear only with thresholds."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from physgan.evaluation import evaluate

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
FAST = {"classifier": {"epochs": 5, "hidden": (16,)}, "fpd": {"n_batches": 3, "n_points": 3}, "kpd": {"n_batches": 3}}

# appended to a copy of the report: writes what the page shows into the DOM that --dump-dom prints
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const v = document.getElementById('verdict').getBoundingClientRect();
  const t = document.querySelector('table.verdict').getBoundingClientRect();
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = `imgs=${ok}/${imgs.length} verdict_top=${Math.round(v.top)} table_bottom=${Math.round(t.bottom)} h=${innerHeight}`;
  document.body.appendChild(out);
});
</script>"""


def _probe(report, tmp_path) -> dict[str, int]:
    page = tmp_path / "probe.html"
    page.write_text((report / "index.html").read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"imgs=(\d+)/(\d+) verdict_top=(-?\d+) table_bottom=(-?\d+) h=(\d+)", dom)
    assert m, f"the probe did not run; browser output starts: {dom[:300]!r}"
    return dict(zip(("ok", "imgs", "verdict_top", "table_bottom", "height"), map(int, m.groups()))) | {"dom": dom}


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (Debian: apt-get install chromium)")
def test_report_renders_in_chromium_with_the_verdict_first(tmp_path):
    rng = np.random.default_rng(0)
    c = np.zeros((300, 0), np.float32)
    real = rng.normal(size=(300, 6)).astype(np.float32)
    fake = rng.normal(0.4, 1.0, size=(300, 6)).astype(np.float32)
    ev = evaluate((real, c), (fake, c), domain="array", n_boot=2, options=FAST, device="cpu")
    report = ev.to_html(tmp_path / "report")
    got = _probe(report, tmp_path)
    assert got["imgs"] >= 1 and got["ok"] == got["imgs"]  # every figure decodes
    assert 0 <= got["verdict_top"] < got["table_bottom"] <= got["height"]  # the whole verdict table on the first screen
    first_screen = got["dom"].split("table class=\"verdict\"")[0]
    assert "PASS" not in got["dom"] and "FAIL" not in got["dom"] and "<h1>" in first_screen
    ev2 = evaluate((real, c), (fake, c), domain="array", n_boot=2, options=FAST, device="cpu", thresholds=["auc_high>0.99"])
    got2 = _probe(ev2.to_html(tmp_path / "report2"), tmp_path)
    assert "PASS" in got2["dom"] and got2["verdict_top"] < got2["height"]
