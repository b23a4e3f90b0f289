#!/usr/bin/env bash
# The Python package: `pip install .` into a virtual environment kept in the
# build directory, then its pytest tests (tests/python) against the built
# parallax-sim. Exits 77 (ctest: skipped), saying so, only when pip cannot
# reach the package registry for its build tools and pytest.
#   bash tests/python_api.sh SOURCE_DIR BUILD_DIR PARALLAX_SIM
set -u
src=$1; build=$2; sim=$3
venv="$build/pyvenv"
log=$(mktemp); trap 'rm -f "$log"' EXIT
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "python3 -m venv failed: install python3-venv (scripts/install-deps.sh)"; exit 1; }
fi
if ! "$venv/bin/python" -c 'import scikit_build_core, pytest' 2>/dev/null; then
  if ! "$venv/bin/pip" install -q "scikit-build-core>=0.8" pytest >"$log" 2>&1; then
    if grep -Eqi 'NewConnectionError|Temporary failure in name resolution|Network is unreachable|Name or service not known|ProxyError|Max retries exceeded|No matching distribution found|Could not find a version' "$log"; then
      echo "SKIP: pip cannot reach the package registry to install scikit-build-core and pytest"
      tail -n 3 "$log"
      exit 77
    fi
    cat "$log"; exit 1
  fi
fi
# the package's own build (CMake through scikit-build-core), kept in the build
# directory so that later runs rebuild only what changed
export CMAKE_BUILD_PARALLEL_LEVEL=2
"$venv/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall \
  --config-settings=build-dir="$build/pywheel" "$src" >"$log" 2>&1 || { cat "$log"; exit 1; }
cd "$build" || exit 1
# the package finds its installed configs; the CLI it is compared with, the source tree's
unset PARALLAX_DATA_DIR
PARALLAX_SIM=$sim PARALLAX_CLI_DATA=$src "$venv/bin/python" -m pytest -q -p no:cacheprovider "$src/tests/python"
