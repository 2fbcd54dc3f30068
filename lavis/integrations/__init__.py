"""Bridges to other evaluation and training toolkits (optional extras)."""
