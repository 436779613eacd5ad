"""Emotion classifiers (Wav2Vec2, attention CNN, S4/S4D) behind one Hugging Face interface."""
