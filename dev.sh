#!/usr/bin/env bash
# near_nb's two entry points for a fresh machine (Python >= 3.10, git, the package registries):
#   bash dev.sh demo   the pipeline on the shipped sample, offline
#   bash dev.sh test   the whole test suite (notebooks, README sync, pytest)
#   bash dev.sh docs   the documentation site in _docs/html (adds the docs extra; tutorials with their stored outputs)
# The first run creates .venv and installs near_nb with its dev extras; later runs reuse it and
# reinstall only when settings.ini or setup.py changed.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${NEAR_VENV:-.venv}"
PY="$(command -v python3.11 || command -v python3)"

ensure_env() {
  local want; want="$(cat settings.ini setup.py pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "dev.sh: creating $VENV with $("$PY" --version)"; "$PY" -m venv "$VENV"
  fi
  if [ "$(cat "$VENV/.near-installed" 2>/dev/null)" != "$want" ]; then
    echo "dev.sh: installing near_nb[dev] into $VENV (first run: torch and friends, a few minutes)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    echo "$want" > "$VENV/.near-installed"
  fi
}

ensure_docs() {
  if ! "$VENV/bin/python" -c 'import sphinx, myst_nb, pydata_sphinx_theme' 2>/dev/null; then
    echo "dev.sh: installing near_nb[dev,docs] into $VENV (Sphinx, MyST-NB, the PyData theme)"
    "$VENV/bin/python" -m pip install -q -e ".[dev,docs]"
  fi
}

case "${1:-}" in
  demo)
    ensure_env; shift
    exec "$VENV/bin/near" demo "$@" ;;
  test)
    ensure_env; shift
    # tests are offline and never touch the user's caches
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    NEAR_NB_HOME="$(mktemp -d)"
    export NEAR_NB_HOME
    trap 'rm -rf "$NEAR_NB_HOME"' EXIT
    # bytecode: the many processes the tests start (`near` subprocesses, Ray workers, kernels) read the installed
    # packages' bytecode that pip wrote, and near_nb's, compiled here once (into the git-ignored __pycache__).
    # A PYTHONPYCACHEPREFIX hides the installed bytecode and, where PYTHONDONTWRITEBYTECODE is set, every process
    # compiles torch & co. from source: importing near_nb.commands took 9.2 s of CPU instead of 3.7 s
    unset PYTHONPYCACHEPREFIX
    "$VENV/bin/python" -m compileall -q near_nb tests
    # one worker per core (NEAR_TEST_WORKERS overrides); each test file runs on one worker, so a module-scoped
    # fixture (a fitted classifier, the built docs site, a Ray cluster) is built once (`--dist loadgroup` would be
    # finer, but its groups are ignored under pytest 9 with pytest-xdist 3.8)
    WORKERS="${NEAR_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
    echo "dev.sh: notebooks (nbdev_test, $WORKERS workers)"
    "$VENV/bin/nbdev_test" --n_workers "$WORKERS" --timing
    echo "dev.sh: pytest ($WORKERS workers)"
    "$VENV/bin/python" -m pytest tests -n "$WORKERS" --dist loadfile --no-loadscope-reorder --durations=15 "$@" ;;
  docs)
    ensure_env; ensure_docs; shift
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    exec "$VENV/bin/python" docs/build.py --out _docs "$@" ;;
  *)
    echo "usage: bash dev.sh demo|test|docs [args]" >&2; exit 2 ;;
esac
