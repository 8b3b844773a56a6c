"""No silent skips in CI: with ``CI=true`` a skipped browser test fails the run (``conftest.py``'s report hook);
outside CI it stays a skip with its reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SKIPPING_BROWSER_TEST = """
import pytest

pytestmark = pytest.mark.browser


def test_picker_in_chromium():
    pytest.skip("no Chromium at /nowhere/chromium")


def test_not_a_browser_test():
    pytest.skip("no reference data")
"""


@pytest.mark.parametrize("ci", ["true", None])
def test_a_skipped_browser_test_fails_in_ci_only(tmp_path, ci):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_browser.py").write_text(SKIPPING_BROWSER_TEST)
    (tmp_path / "test_other.py").write_text("import pytest\n\n\ndef test_reference():\n    pytest.skip('no data')\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:xdist", "-p", "no:cacheprovider",
                             "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    if ci:
        assert result.returncode == 1, result.stdout
        assert "CI=true and the browser test skipped: no Chromium at /nowhere/chromium" in result.stdout
        assert "2 failed, 1 skipped" in result.stdout, result.stdout  # the other test's skip is not a browser's
    else:
        assert result.returncode == 0 and "3 skipped" in result.stdout, result.stdout
