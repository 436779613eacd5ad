#!/usr/bin/env bash
# Installs the speech synthesisers that benchmarks/speech_corpora drives, from the Debian archive, and is
# quick when they are already present:
#   espeak-ng                         formant synthesiser (corpus A, RAVDESS layout)
#   festival + three English voices   diphone/HTS synthesiser (corpus B, CREMA-D layout):
#     festvox-kallpc16k (male), festvox-kdlpc16k (male), festvox-us-slt-hts (female)
# Usage: bash tools/install_tts.sh
set -euo pipefail

voices=(festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
packages=()
command -v espeak-ng >/dev/null || packages+=(espeak-ng)
command -v festival >/dev/null || packages+=(festival)
for voice in "${voices[@]}"; do
    # A voice is only data under /usr/share/festival; dpkg knows whether it is there.
    dpkg-query -W -f='${Status}' "$voice" 2>/dev/null | grep -q 'install ok installed' || packages+=("$voice")
done
if [ ${#packages[@]} -eq 0 ]; then
    echo "install_tts: espeak-ng, festival and its voices are already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_tts: error: no apt-get here; install ${packages[*]} with your package manager" >&2
    exit 1
fi
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
echo "install_tts: installing ${packages[*]}"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "install_tts: done ($(espeak-ng --version | head -1); festival $(festival --version | head -1))"
