#!/usr/bin/env bash
# One entry point for a fresh machine (python3 + pip): creates .venv with the pinned torch (constraints.txt;
# README "Two commands" says how to get its CPU build) and everything hello needs, then runs the demo build
# or the test suite.
#   bash dev.sh demo    distil the embedded default (scikit-learn digits) into a bundle and train on it
#   bash dev.sh test    run the test suite (fast tests; "-m slow" runs only the slow ones)
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.hello-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "installing hello and its dependencies into .venv (log: .venv/install.log)" >&2
  if ! .venv/bin/pip install -c constraints.txt -e ".[test,bench]" > .venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    exit 1
  fi
  touch "$stamp"
fi

cmd="${1:-}"; shift || true
case "$cmd" in
  demo) exec .venv/bin/hello-build --demo "$@" ;;
  test) exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: bash dev.sh demo|test [args...]" >&2; exit 2 ;;
esac
