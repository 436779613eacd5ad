"""Synthesised emotional-speech corpora, generated with Debian's speech synthesisers, laid out exactly
like real corpus downloads so that the project's loaders read them unchanged:

* `espeak`: espeak-ng voices in the RAVDESS layout (`Actor_XX/03-01-EE-II-SS-RR-AA.wav`, 22,050 Hz);
* `festival`: Festival voices in the CREMA-D layout (`AudioWAV/1001_DFA_ANG_XX.wav`, 16,000 Hz).

    bash tools/install_tts.sh
    python -m benchmarks.speech_corpora espeak data_synth/ravdess --speakers 24 --seed 0
    python -m benchmarks.speech_corpora festival data_synth/cremad --speakers 20 --seed 0
    python -m benchmarks.speech_corpora.baseline ravdess data_synth/ravdess

See README.md beside this file for the design and the measured baselines.
"""
