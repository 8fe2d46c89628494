#!/usr/bin/env bash
# Installs Request Tracker 5 (Debian's request-tracker5 with the SQLite backend and the standalone Starlet server)
# for the real-RT tests (devkit/request_tracker.py). Idempotent: exits 0 at once when it is already installed.
# Non-interactive: dbconfig-no-thanks keeps dbconfig-common from configuring a database (each test run makes its own
# SQLite database in a temporary directory) and debconf takes the defaults for RT's other questions. It starts no
# service: the harness runs its own rt-server on a free loopback port.
set -euo pipefail

PACKAGES=(request-tracker5 rt5-db-sqlite rt5-standalone)

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for package in "${PACKAGES[@]}"; do
  installed "$package" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
# request-tracker5 depends on "dbconfig-common | dbconfig-no-thanks": the latter makes dbconfig-common do nothing.
extra=(dbconfig-no-thanks)
# ... and on "default-mta | mail-transport-agent": without an MTA apt would pick exim4, a daemon. ssmtp is a plain
# sendmail stand-in without a daemon (RT's site config in the harness never sends mail anyway). An MTA that is
# already there is kept.
[ -e /usr/sbin/sendmail ] || extra+=(ssmtp)

echo "installing Request Tracker 5 (${missing[*]}) for the real-RT tests..."
"${SUDO[@]}" debconf-set-selections <<'SELECTIONS'
dbconfig-common dbconfig-common/dbconfig-install boolean false
request-tracker5 request-tracker5/dbconfig-install boolean false
request-tracker5 request-tracker5/install-cronjobs boolean false
request-tracker5 request-tracker5/handle-siteconfig-permissions boolean false
SELECTIONS
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}" "${extra[@]}" > /dev/null 2> >(grep -v 'apt-utils is not installed' >&2)
