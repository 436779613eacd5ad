#!/usr/bin/env bash
# Installs what the project needs, and is quick when nothing is missing.
#   bash tools/bootstrap.sh train   FFmpeg's shared libraries (torchcodec decodes audio with them), a virtual
#                                   environment at .venv, and this project (editable) with its dependencies
#   bash tools/bootstrap.sh test    the same plus the test-only pieces: the [dev,deploy,app,opensmile] extras and
#                                   Chromium + ChromeDriver for the web demo's browser test, espeak-ng and
#                                   Festival for the synthesised speech corpora (tools/install_tts.sh)
# Python packages come at the versions in requirements/constraints.txt (the lock; `make lock` refreshes it).
# pip runs again only when setup.cfg, pyproject.toml or the lock changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-train}

apt_packages=()
ldconfig -p 2>/dev/null | grep -q 'libavutil\.so' || apt_packages+=(ffmpeg)
if [ "$profile" = test ]; then
    command -v chromium >/dev/null || apt_packages+=(chromium)
    command -v chromedriver >/dev/null || apt_packages+=(chromium-driver)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${apt_packages[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    if command -v apt-get >/dev/null; then
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
            "${apt_packages[@]}" >/dev/null
    else
        echo "bootstrap: no apt-get here; install ${apt_packages[*]} with your package manager" >&2
        exit 1
    fi
fi

# The tests generate small speech corpora with espeak-ng and Festival (benchmarks/speech_corpora).
if [ "$profile" = test ]; then
    bash tools/install_tts.sh >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    if ! "$python" -m venv .venv; then
        # Debian's system Python ships venv separately.
        rm -rf .venv
        if command -v apt-get >/dev/null; then
            [ "$(id -u)" -eq 0 ] && sudo_cmd="" || sudo_cmd="sudo"
            $sudo_cmd apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-venv >/dev/null
            "$python" -m venv .venv
        else
            echo "bootstrap: '$python -m venv' failed; install Python's venv module" >&2
            exit 1
        fi
    fi
fi
case "$profile" in
    train) extras="" ;;
    test) extras="[dev,deploy,app,opensmile]" ;;
    *) echo "bootstrap: unknown profile '$profile' (train or test)" >&2; exit 2 ;;
esac
stamp=.venv/.installed-$profile
lock=requirements/constraints.txt
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
    echo "bootstrap: installing the project$extras and its dependencies into .venv (versions from $lock)"
    # pip and setuptools first, at their tested versions: setuptools builds the editable install below,
    # without build isolation, so that no unpinned setuptools is fetched for it.
    .venv/bin/python -m pip install -q -c "$lock" pip setuptools
    .venv/bin/python -m pip install -q --no-build-isolation -c "$lock" -e ".$extras"
    touch "$stamp"
fi
