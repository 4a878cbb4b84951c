"""Training: the loop, the pix2pix objective, schedules, sampling order and checkpoint state."""
