#!/usr/bin/env bash
# Creates the virtual environment and installs robots_ts with everything it needs.
# Usage: scripts/bootstrap.sh PYTHON VENV
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}

# Debian libraries the stack loads at run time: open3d needs libusb, MuJoCo's headless
# renderer needs EGL/GL (Mesa on the CPU).
need=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib 'libusb-1.0.so.0' || need+=(libusb-1.0-0)
have_lib 'libEGL.so.1' || need+=(libegl1)
have_lib 'libGL.so.1' || need+=(libgl1)
have_lib 'libEGL_mesa.so.0' || need+=(libegl-mesa0)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/aarch64-linux-gnu/dri/swrast_dri.so ] || need+=(libgl1-mesa-dri)
have_lib 'libgomp.so.1' || need+=(libgomp1)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
  else
    echo "bootstrap: missing system libraries. Install them with:" >&2
    echo "  sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
# The project and its dependencies (Ray and Ray Tune among them: pyproject.toml pins ray[tune]).
"$VENV/bin/python" -m pip install -q -e ".[dev]"
echo "bootstrap: done ($VENV)"
