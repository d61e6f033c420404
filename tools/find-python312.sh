#!/usr/bin/env bash
# Prints the path of a Python 3.12 interpreter, or nothing: PATH first, then pyenv's installs.
set -u
if command -v python3.12 >/dev/null 2>&1; then
  candidate=$(command -v python3.12)
  # A pyenv shim answers on PATH even when the active version is not 3.12; ask it for real.
  if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
    echo "$candidate"; exit 0
  fi
fi
root=${PYENV_ROOT:-$HOME/.pyenv}
if [ -d "$root/versions" ]; then
  newest=$(ls -1 "$root/versions" | grep -E '^3\.12\.[0-9]+$' | sort -t. -k3 -n | tail -n 1)
  if [ -n "$newest" ] && [ -x "$root/versions/$newest/bin/python3.12" ]; then
    echo "$root/versions/$newest/bin/python3.12"; exit 0
  fi
fi
exit 0
