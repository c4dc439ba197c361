"""The documentation: the site builds cleanly and works offline, and the README's links lead somewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
#: a Markdown link or image: [text](target) or ![alt](target)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr
    return out


def test_site_builds_strict_with_its_key_pages(site):
    for page in ("index.html", "install.html", "job-files.html", "bad-input.html", "outputs.html",
                 "clusters.html", "performance.html", "architecture.html", "tutorial.html",
                 "reference/api.html", "reference/config.html", "images/flow.svg"):
        assert (site / page).is_file(), page
    architecture = (site / "architecture.html").read_text()
    assert 'src="images/flow.svg"' in architecture
    # the reference is drawn from the docstrings, the cluster guide from cluster/README.md
    assert "asm_dask.api.load_job" in (site / "reference" / "api.html").read_text()
    assert "min_confidence" in (site / "reference" / "config.html").read_text()
    assert "Who may connect" in (site / "clusters.html").read_text()


def test_site_needs_no_network(site):
    """No script, stylesheet, font or image is fetched from elsewhere: the site opens offline."""
    remote = re.compile(r"""<(?:script|img|link|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.I)
    for page in site.rglob("*.html"):
        found = [m.group(0) for m in remote.finditer(page.read_text())
                 if "rel=\"canonical\"" not in m.group(0)]
        assert not found, (page.relative_to(site), found)


def test_every_relative_link_of_the_readme_leads_to_a_file():
    text = (ROOT / "README.md").read_text()
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]
    assert targets, "the README links to the documentation"
    for target in targets:
        path = ROOT / target.split("#")[0]
        assert path.exists(), f"README.md links to {target}, which does not exist"
