"""Data sets the project generates itself (deterministic from a seed), for tests and demos."""
