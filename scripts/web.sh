#!/usr/bin/env bash
# The web app (web/, docs/web.md): its npm packages, its build into web/dist (which `blocklab serve` serves at /),
# and its tests.
#
#   scripts/web.sh setup   npm ci in web/ — skipped when web/node_modules matches web/package-lock.json
#   scripts/web.sh build   setup, then vite build into web/dist (extracts the engine's FFN source; fails if a
#                          marker is missing)
#   scripts/web.sh test    setup, type check (svelte-check), the unit tests (vitest), build, then the browser tests
#                          (playwright-core driving Debian's chromium) against build/blocklab (BLOCKLAB_BINARY
#                          overrides) on a free port; screenshots in web/test-results/
#   scripts/web.sh dev     the Vite dev server, proxying /api to a running server (BLOCKLAB_API, default :8080)
#
# Needs Node >= 20.19 with npm, and /usr/bin/chromium for `test` (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../web"

need_node() {
  command -v node >/dev/null && command -v npm >/dev/null \
    || { echo "web.sh: node and npm are needed (Node >= 20.19)" >&2; exit 1; }
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
    || { echo "web.sh: Node >= 20.19 is needed (Vite 8), found $(node --version)" >&2; exit 1; }
}

setup() {
  need_node
  local stamp=node_modules/.blocklab-lock.sha256 want
  want="$(sha256sum package-lock.json | cut -d' ' -f1) $(node --version)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  echo "web.sh: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
}

build() {
  setup
  npx vite build --logLevel warn
  echo "web.sh: built web/dist ($(du -sh dist | cut -f1))" >&2
}

typecheck() {
  echo "== web: type check (svelte-check) ==" >&2
  npx svelte-check --tsconfig ./tsconfig.json --fail-on-warnings --output human
}

unit_tests() {
  echo "== web: unit tests (vitest) ==" >&2
  npx vitest run --config vitest.config.ts
}

browser_tests() {
  echo "== web: browser tests (playwright-core + $(/usr/bin/chromium --version 2>/dev/null || echo 'no chromium')) ==" >&2
  npx vitest run --config vitest.e2e.config.ts
}

case "${1:-}" in
  setup) setup ;;
  build) build ;;
  test)
    setup
    start=$SECONDS
    typecheck
    unit_tests
    build
    browser_tests
    echo "web.sh: web tests passed in $((SECONDS - start)) s; screenshots in web/test-results/" >&2
    ;;
  dev) setup && exec npx vite ;;
  *)
    echo "usage: scripts/web.sh setup|build|test|dev" >&2
    exit 2
    ;;
esac
