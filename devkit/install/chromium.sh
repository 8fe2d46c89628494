#!/usr/bin/env bash
# Installs Chromium (Debian's chromium package) for the browser test of the web UI
# (sync_pipelines_tests/operations/test_web_ui_browser.py), which renders Dagster's pages headless and reads the text
# they show. Idempotent: exits 0 at once when it is already installed. Where it cannot be installed (no root and no
# sudo, no network) it says so and exits 0: the browser test then skips, naming the missing browser.
set -euo pipefail

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
installed chromium && exit 0
command -v apt-get > /dev/null || { echo "chromium: no apt-get here; the browser test will be skipped" >&2; exit 0; }

if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo > /dev/null; then
  SUDO=(sudo)
else
  echo "chromium: not root and no sudo, not installed; the browser test will be skipped" >&2
  exit 0
fi

echo "installing Chromium (headless, for the web UI browser test)..."
"${SUDO[@]}" apt-get update -qq || true
# --no-install-recommends: no desktop integration, fonts beyond the dependencies or extensions are needed headless.
if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
  > /dev/null 2> >(grep -v 'apt-utils is not installed' >&2); then
  echo "chromium: apt-get install failed; the browser test will be skipped" >&2
fi
