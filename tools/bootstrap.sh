#!/usr/bin/env bash
# Installs what the project needs and is quick when nothing is missing:
#   FFmpeg's shared libraries (torchcodec decodes audio with them), a virtual environment at .venv,
#   and this project with its dependencies (editable). Re-runs pip only when setup.cfg changed.
set -euo pipefail
cd "$(dirname "$0")/.."

have_ffmpeg_libs() { ldconfig -p 2>/dev/null | grep -q 'libavutil\.so'; }
if ! have_ffmpeg_libs; then
    echo "bootstrap: installing FFmpeg (needed by torchcodec to decode audio)"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    if command -v apt-get >/dev/null; then
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq ffmpeg >/dev/null
    elif command -v dnf >/dev/null; then
        $sudo_cmd dnf install -y ffmpeg-free
    elif command -v brew >/dev/null; then
        brew install ffmpeg
    else
        echo "bootstrap: no known package manager; install FFmpeg (shared libraries) yourself" >&2
        exit 1
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$python" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing the project and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[${EXTRAS:-dev}]"
    touch "$stamp"
fi
