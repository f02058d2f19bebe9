#!/usr/bin/env bash
# CI: the end-to-end test against real services (s2_assets_tests/e2e): a PostgreSQL server,
# dagster-webserver and dagster-daemon started by deploy/services.sh, backfills launched
# through GraphQL, the asset page read by Chromium, and the same on a Celery cluster (Redis
# and two workers). Installs what it needs (Debian packages, the `postgres`, `celery` and
# `dask` extras, playwright-core from npm) and fails loudly when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

PLAYWRIGHT_CORE_VERSION=1.65.1
NODE_DIR=${S2_E2E_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/s2_assets/e2e-node}
CHROMIUM=${S2_E2E_CHROMIUM:-/usr/bin/chromium}

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[[ -x $CHROMIUM ]] || missing+=(chromium fonts-liberation)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]})); then
    echo "e2e: installing ${missing[*]} (apt-get)"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || {
    echo "e2e: PostgreSQL server programs still missing after apt-get" >&2
    exit 1
}
[[ -x $CHROMIUM ]] || { echo "e2e: no Chromium at $CHROMIUM after apt-get" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "e2e: no redis-server after apt-get" >&2; exit 1; }

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e '.[dev,postgres,celery,dask]'

# playwright-core only: it drives Debian's Chromium and downloads no browser.
if [[ $(cat "$NODE_DIR/node_modules/playwright-core/package.json" 2>/dev/null) != *"\"version\": \"$PLAYWRIGHT_CORE_VERSION\""* ]]; then
    mkdir -p "$NODE_DIR"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --no-save --silent \
        "playwright-core@$PLAYWRIGHT_CORE_VERSION"
fi

S2_E2E=1 NODE_PATH="$NODE_DIR/node_modules" S2_E2E_CHROMIUM=$CHROMIUM \
    .venv/bin/python -m pytest s2_assets_tests/e2e -rA
echo "e2e: done in $((SECONDS - started)) s"
