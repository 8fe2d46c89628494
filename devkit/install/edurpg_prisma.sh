#!/usr/bin/env bash
# Install devkit/edurpg_prisma (Prisma CLI + client + @prisma/adapter-pg from npm) and generate its client,
# offline-safe: install scripts are skipped (@prisma/engines' postinstall would download native engines from
# binaries.prisma.sh) and the client uses the JS "client" engine, so nothing but the npm registry is reached.
#
# Idempotent and quiet: exits 0 at once when the stamp for the current package-lock.json + schema.prisma
# exists. Output of npm/prisma goes to node_modules/.edurpg-install.log and is shown only on failure.
# Needs Node.js >= 18.18 and npm.
set -euo pipefail
DIR="$(cd "$(dirname "$0")/../edurpg_prisma" && pwd)"
cd "$DIR"

if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  echo "edurpg_prisma: node and npm are needed (apt-get install nodejs npm, or Node.js >= 18.18)" >&2
  exit 1
fi

hash_of() { cat "$@" | sha1sum | cut -c1-12; }
if [ -f package-lock.json ]; then inputs=(package-lock.json schema.prisma); else inputs=(package.json schema.prisma); fi
STAMP="node_modules/.edurpg-installed-$(hash_of "${inputs[@]}")"
[ -e "$STAMP" ] && [ -f generated/client/index.js ] && exit 0

export PRISMA_SKIP_POSTINSTALL_GENERATE=1 PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING=1 PRISMA_GENERATE_SKIP_AUTOINSTALL=1
export PRISMA_HIDE_UPDATE_MESSAGE=1 CHECKPOINT_DISABLE=1 NO_COLOR=1
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
run() {
  if ! "$@" >> "$LOG" 2>&1; then
    echo "edurpg_prisma: '$*' failed; last lines:" >&2
    tail -n 25 "$LOG" >&2
    exit 1
  fi
}

if [ -f package-lock.json ]; then
  run npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
else
  run npm install --ignore-scripts --no-audit --no-fund --loglevel=error
fi
# `prisma generate` only parses the datasource url; no database is contacted.
DATABASE_URL="postgresql://placeholder@127.0.0.1:5432/placeholder" run node node_modules/prisma/build/index.js generate
[ -f generated/client/index.js ] || { echo "edurpg_prisma: prisma generate wrote no client" >&2; exit 1; }

rm -f node_modules/.edurpg-installed-*
cp "$LOG" node_modules/.edurpg-install.log
touch "$STAMP"
