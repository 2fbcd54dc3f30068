"""Registered runners (epoch-based and iteration-based)."""
