"""Data sets: registered builders, torch Datasets, synthetic generators and download scripts."""
