#!/usr/bin/env bash
# Installs the supervisors `botfleet bench supervisor` compares with. They
# are peers for the benchmark, never part of botfleet. Debian or Ubuntu, as
# root (or with sudo); PM2 goes into bench/supervisors/node with npm.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
# runit without runit-run: no init glue, just runsvdir and runsv.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    supervisor s6 runit daemontools
# The Debian package starts a supervisord of its own; the benchmark runs
# its own instances.
$SUDO systemctl disable --now supervisor 2>/dev/null || $SUDO service supervisor stop 2>/dev/null || true
if command -v npm >/dev/null; then
    npm install --no-audit --no-fund --prefix node pm2@7
else
    echo "npm not found: PM2 is skipped (apt-get install nodejs npm to add it)" >&2
fi
echo "installed: $(supervisord --version 2>/dev/null | head -1) supervisord, s6, runit, daemontools${PM2:-}"
