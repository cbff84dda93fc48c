#!/usr/bin/env bash
# Records the narrated demo (`make demo`: scripts/demo.py, which starts its own service on a
# throwaway SQLite database with a stand-in model server) and renders it as an animated SVG.
#
#   scripts/record-demo.sh                  # writes docs/demo.svg
#   scripts/record-demo.sh /tmp/demo.svg    # somewhere else
#   BASE_URL=https://<app>.koyeb.app scripts/record-demo.sh   # a deployment (step 8 skipped)
#
# asciinema records the demo in a pseudo-terminal (so the demo uses colours) to
# .tools/demo/demo.cast; scripts/pace_cast.py re-times it to be readable (the demo itself runs
# in about three seconds); svg-term renders that to SVG. asciinema (PyPI) and svg-term-cli
# (npm) are installed into .tools/demo/ on first use, never into the project's environment.
# With Chromium on the PATH, the last frame is also saved as .tools/demo/last-frame.png.
#
# Settings: DEMO_COLS, DEMO_ROWS (terminal size, default 100x30), DEMO_IDLE (longest real
# pause kept, seconds), PYTHON (the interpreter for the tools' virtualenv).
set -euo pipefail

ASCIINEMA_VERSION=2.4.0
SVG_TERM_VERSION=2.1.1
COLS=${DEMO_COLS:-100}
ROWS=${DEMO_ROWS:-30}
IDLE=${DEMO_IDLE:-1.5}
MAX_BYTES=$((2 * 1024 * 1024))

cd "$(dirname "$0")/.."
out=${1:-docs/demo.svg}
tools=.tools/demo
cast=$tools/demo.cast
paced=$tools/demo.paced.cast
status=$tools/demo.status

say() { if [[ -t 2 ]]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else echo "==> $*" >&2; fi; }
die() { printf 'record-demo: %s\n' "$*" >&2; exit 1; }

[[ -x .venv/bin/python ]] || die ".venv is missing: run 'make demo' (or 'uv sync') once first"
mkdir -p "$tools" "$(dirname "$out")"

asciinema=$tools/venv/bin/asciinema
if [[ "$("$asciinema" --version 2>/dev/null)" != "asciinema $ASCIINEMA_VERSION" ]]; then
  say "installing asciinema $ASCIINEMA_VERSION into $tools/venv"
  "${PYTHON:-python3}" -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check \
    "asciinema==$ASCIINEMA_VERSION"
fi

svg_term=$tools/node/node_modules/.bin/svg-term
svg_term_pkg=$tools/node/node_modules/svg-term-cli/package.json
installed=$(node -p "require('./$svg_term_pkg').version" 2>/dev/null || true)
if [[ "$installed" != "$SVG_TERM_VERSION" ]]; then
  command -v npm >/dev/null || die "npm is needed for svg-term-cli (apt-get install nodejs npm)"
  say "installing svg-term-cli $SVG_TERM_VERSION into $tools/node"
  npm install --silent --no-audit --no-fund --prefix "$tools/node" \
    "svg-term-cli@$SVG_TERM_VERSION"
fi

say "recording the demo (${COLS}x${ROWS}) to $cast"
rm -f "$status"
# The prompt line stands for what a viewer would type; the demo's own exit status is kept,
# since asciinema exits 0 whatever the recorded command did.
# shellcheck disable=SC2016  # expanded by the recorded shell, not this one
record='printf "\033[32m$\033[0m make demo\n"; .venv/bin/python scripts/demo.py; echo $? >"$DEMO_STATUS"'
env -u NO_COLOR TERM="${TERM:-xterm-256color}" PYTHONIOENCODING=utf-8 DEMO_STATUS="$status" \
  "$asciinema" rec --quiet --overwrite --idle-time-limit "$IDLE" \
  --cols "$COLS" --rows "$ROWS" --title "Notes API: make demo" \
  --command "bash -c '$record'" "$cast" </dev/null
[[ "$(cat "$status" 2>/dev/null)" == 0 ]] || die "the demo failed (exit $(cat "$status" 2>/dev/null || echo '?')); see $cast"

say "rendering $out"
.venv/bin/python scripts/pace_cast.py "$cast" "$paced"
"$svg_term" --in "$paced" --out "$out" --window --no-cursor --padding 12

bytes=$(wc -c <"$out")
((bytes <= MAX_BYTES)) || die "$out is $bytes bytes, over $MAX_BYTES: lower DEMO_ROWS or the pauses"
loop=$(tail -n 1 "$paced" | cut -d, -f1 | tr -d '[')
say "$out: $((bytes / 1024)) KiB, a ${loop%.*} s loop"

chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -n "$chromium" ]]; then
  # A copy of the SVG frozen just before its loop ends (a negative delay, animation paused).
  still=$tools/last-frame.svg
  at=$(awk -v d="$loop" 'BEGIN { printf "%.2f", d - 0.05 }')
  sed "s/<style>/<style>*{animation-delay:-${at}s!important;animation-play-state:paused!important}/" \
    "$out" >"$still"
  size=$(grep -o '^<svg[^>]*' "$out" | grep -o 'width="[0-9.]*" height="[0-9.]*"' | tr -dc '0-9. ')
  read -r width height <<<"$size"
  if timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="${width%.*},$((${height%.*} + 1))" --screenshot="$tools/last-frame.png" \
    "file://$PWD/$still" >/dev/null 2>&1; then
    say "last frame: $tools/last-frame.png"
  else
    say "no snapshot: Chromium failed (the SVG is written all the same)"
  fi
fi
