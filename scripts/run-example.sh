#!/usr/bin/env bash
# Serve examples/basic the simplest way: a plain gunicorn whose config has
# `import gdirty_pyshim.master`, so gunicorn's own master runs gdirty as its
# dirty arbiter. One process tree: Ctrl-C or SIGTERM to gunicorn stops
# gunicorn, gdirty and every worker.
#   VENV           the venv with gunicorn and gdirty's Python package (.venv)
#   GDIRTY_BINARY  the gdirty to run (default: gdirty in the venv, then PATH)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-.venv}
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
cd "$root/examples/basic"
cat <<MSG

  gunicorn on http://127.0.0.1:8000, gdirty as its dirty arbiter. Try:
        curl 'http://127.0.0.1:8000/echo?msg=hi'
        curl 'http://127.0.0.1:8000/whoami'
        curl 'http://127.0.0.1:8000/reverse?text=gdirty'
        curl 'http://127.0.0.1:8000/count?n=5'
  Ctrl-C stops everything.

MSG
exec "$venv/bin/python" -m gunicorn -c gunicorn.conf.py "$@"
