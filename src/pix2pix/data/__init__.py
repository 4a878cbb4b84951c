"""Datasets, image I/O, preprocessing, the synthetic world and dataset tools."""
