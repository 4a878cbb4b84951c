"""Saving and loading models: pretrained directories and reference checkpoints."""
