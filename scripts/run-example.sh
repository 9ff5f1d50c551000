#!/usr/bin/env bash
# Serve examples/basic: gdirty runs the dirty pool, a real gunicorn (with its
# own dirty arbiter off) serves HTTP on 127.0.0.1:8000 and calls gdirty.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-.venv}
py="$root/$venv/bin/python"
cd "$root/examples/basic"

out=$(mktemp)
"$root/bin/gdirty" --config gunicorn.conf.py --python "$py" >"$out" &
gdirty_pid=$!
gunicorn_pid=
cleanup() {
  [ -n "$gunicorn_pid" ] && kill -TERM "$gunicorn_pid" 2>/dev/null && wait "$gunicorn_pid" 2>/dev/null || true
  kill -TERM "$gdirty_pid" 2>/dev/null && wait "$gdirty_pid" 2>/dev/null || true
  rm -f "$out"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# gdirty prints GUNICORN_DIRTY_SOCKET=... once its socket is listening.
for _ in $(seq 1 100); do
  grep -q '^GUNICORN_DIRTY_SOCKET=' "$out" && break
  kill -0 "$gdirty_pid" 2>/dev/null || { echo "gdirty failed to start" >&2; exit 1; }
  sleep 0.1
done
export "$(grep '^GUNICORN_DIRTY_SOCKET=' "$out")"
echo "gdirty is serving on $GUNICORN_DIRTY_SOCKET"

"$py" -m gunicorn -c gunicorn.conf.py --dirty-workers 0 &
gunicorn_pid=$!
cat <<MSG

  Try:  curl 'http://127.0.0.1:8000/echo?msg=hi'
        curl 'http://127.0.0.1:8000/whoami'
        curl 'http://127.0.0.1:8000/reverse?text=gdirty'
        curl 'http://127.0.0.1:8000/count?n=5'
  Ctrl-C stops gunicorn and gdirty.

MSG
wait "$gunicorn_pid"
