#!/usr/bin/env bash
# Install the Debian packages Parallax builds and runs with (only the missing
# ones; apt-get update first). Root or sudo.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libglib2.0-dev libjson-glib-dev gnuplot-nox libopenblas-dev libopenmpi-dev openmpi-bin
      python3 python3-venv)  # python3-venv: the Python package test (tests/python_api.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing: ${missing[*]}"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi
