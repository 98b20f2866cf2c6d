#!/usr/bin/env bash
# Install the real agent CLIs at the versions the tests pin, for orch_tests::real (the tests that
# run Claude Code, Codex, Gemini CLI and Aider against the loopback model server). Each goes into
# its own directory under $ORCH_AGENTS_DIR (default ~/.cache/orch-ci/agents), the layout
# RealAgent::binary looks for; one already at its pinned version is left alone, so a second run
# costs a version check each. Needs npm (Node 20) and python3 (3.10-3.12) with venv.
#
# When moving a pin, re-check tests/fixtures/screens/README.md against the new version.
set -euo pipefail

CLAUDE_VERSION=2.1.197
CODEX_VERSION=0.171.0
GEMINI_VERSION=0.61.0
AIDER_VERSION=0.86.2

dir="${ORCH_AGENTS_DIR:-$HOME/.cache/orch-ci/agents}"
mkdir -p "$dir"

# The version a CLI reports, or nothing when it does not run. Each runs with a throwaway HOME so
# that asking for a version writes nothing into this user's.
version_of() {
  local home
  home="$(mktemp -d)"
  HOME="$home" "$@" --version 2>/dev/null | head -1 || true
  rm -rf "$home"
}

# npm_agent NAME PACKAGE VERSION: install PACKAGE@VERSION into $dir/NAME unless it is there.
npm_agent() {
  local name=$1 package=$2 version=$3
  local bin="$dir/$name/node_modules/.bin/$name"
  if [[ -x "$bin" && "$(version_of "$bin")" == *"$version"* ]]; then
    echo "agents: $name $version is installed"
    return
  fi
  echo "agents: installing $package@$version into $dir/$name"
  rm -rf "${dir:?}/$name"
  npm install --silent --no-audit --no-fund --prefix "$dir/$name" "$package@$version"
  local got
  got="$(version_of "$bin")"
  if [[ "$got" != *"$version"* ]]; then
    echo "agents: $bin reports '${got}', expected $version" >&2
    exit 1
  fi
}

npm_agent claude @anthropic-ai/claude-code "$CLAUDE_VERSION"
npm_agent codex @openai/codex "$CODEX_VERSION"
npm_agent gemini @google/gemini-cli "$GEMINI_VERSION"

aider="$dir/aider/bin/aider"
if [[ -x "$aider" && "$(version_of "$aider")" == *"$AIDER_VERSION"* ]]; then
  echo "agents: aider $AIDER_VERSION is installed"
else
  echo "agents: installing aider-chat==$AIDER_VERSION into $dir/aider"
  rm -rf "${dir:?}/aider"
  python3 -m venv "$dir/aider"
  "$dir/aider/bin/pip" install --quiet --disable-pip-version-check "aider-chat==$AIDER_VERSION"
  got="$(version_of "$aider")"
  if [[ "$got" != *"$AIDER_VERSION"* ]]; then
    echo "agents: $aider reports '${got}', expected $AIDER_VERSION" >&2
    exit 1
  fi
fi

echo "agents: ready in $dir"
