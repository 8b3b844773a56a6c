#!/usr/bin/env bash
# Install the system Chromium that tests/test_browser.py drives through Playwright (Debian/Ubuntu package).
# Idempotent and quiet: does nothing when /usr/bin/chromium already exists. Playwright's own browser download
# (`playwright install`) is never used: the tests launch this executable. Fails, with the reason, when Chromium
# cannot be installed: CI (CI=true) counts a skipped browser test as a failure, so it is better to stop here.
#   bash tools/install_browser.sh        # called by .ci/run before the tests
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: no apt-get here; install Chromium at /usr/bin/chromium by hand (the browser test needs it)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "install_browser.sh: not root and no sudo: cannot install chromium (apt-get install chromium as root)" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null || { echo "install_browser.sh: apt-get update failed (no network to the package mirror?)" >&2; exit 1; }
$sudo apt-get install -y -qq chromium >/dev/null || { echo "install_browser.sh: apt-get install chromium failed" >&2; exit 1; }
/usr/bin/chromium --version >/dev/null 2>&1 || { echo "install_browser.sh: chromium installed but does not run" >&2; exit 1; }
echo "install_browser.sh: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
