#!/usr/bin/env bash
# Installs what `make video` needs: Debian packages through apt-get when root (ffmpeg,
# chromium, fonts), and the Python tools into .tools/video, a venv of
# their own, from video/requirements.txt (pinned). The tools stay out of the project's lock:
# onnxruntime, Playwright's driver and the voice weigh some 300 MB that `make run`, the tests
# and the image never need. Playwright drives Debian's chromium; `playwright install` is
# never run (it downloads a browser build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TOOLS=.tools/video

need=()
for pair in ffmpeg:ffmpeg ffprobe:ffmpeg chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair##*:}")
done
test -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf || need+=(fonts-dejavu-core)
if ((${#need[@]})); then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "video: apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  else
    echo "video: missing Debian packages: ${need[*]}." >&2
    echo "video: install them (sudo apt-get install ${need[*]}) or run make video as root." >&2
    exit 2
  fi
fi

stamp=$TOOLS/.installed-$(sha256sum video/requirements.txt | cut -c1-12)
if [[ ! -f $stamp ]]; then
  test -x $TOOLS/bin/pip || "$PYTHON" -m venv $TOOLS
  $TOOLS/bin/pip install --quiet --disable-pip-version-check -r video/requirements.txt
  rm -f $TOOLS/.installed-*
  touch "$stamp"
fi
