#!/usr/bin/env bash
# Installs the real ACP agents that the ACP adapter's tests (daemon/src/adapters/acp/tests.rs)
# drive, into cache directories that are reused when present. Idempotent: a second run only
# checks the pinned versions.
#
#   gemini:            $ORCH_AGENTS_DIR/gemini      @google/gemini-cli 0.61.0 (`gemini --acp`)
#   claude-agent-acp:  $ORCH_AGENTS_DIR/claude-acp  @agentclientprotocol/claude-agent-acp 0.101.0
#                      (bundles its own Claude; declares node >= 22 but runs on this machine's
#                      node 20, which the tests show)
#
# ORCH_AGENTS_DIR defaults to $HOME/.cache/orch-ci/agents; the tests look there by default.
# Needs node and npm (the machine's); nothing is exported.
set -euo pipefail

agents="${ORCH_AGENTS_DIR:-$HOME/.cache/orch-ci/agents}"
gemini_version=0.61.0
claude_acp_version=0.101.0
say() { echo "ci/acp: $*"; }

# install DIR PACKAGE VERSION: npm-install PACKAGE@VERSION into DIR unless that version is there.
install() {
  local dir="$1" package="$2" version="$3"
  local manifest="$dir/node_modules/$package/package.json"
  if [ -f "$manifest" ] && grep -q "\"version\": \"$version\"" "$manifest"; then
    say "$package $version is in $dir"
    return
  fi
  say "installing $package $version into $dir"
  mkdir -p "$dir"
  npm install --no-audit --no-fund --loglevel=error --prefix "$dir" "$package@$version"
}

install "$agents/gemini" @google/gemini-cli "$gemini_version"
install "$agents/claude-acp" @agentclientprotocol/claude-agent-acp "$claude_acp_version"
