#!/usr/bin/env bash
# Make `prometheus` and `promtool` available (Debian package `prometheus`) and print the
# directory that holds them (see ensure-debian-package.sh).
#
#   PROM_BIN=$(scripts/ensure-prometheus.sh) && "$PROM_BIN/promtool" --version
exec "$(dirname "$0")/ensure-debian-package.sh" prometheus prometheus promtool
