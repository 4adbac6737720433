"""Training and evaluation (kept out of the inference import path)."""
