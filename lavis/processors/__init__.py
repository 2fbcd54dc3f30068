"""Image, text and video processors (registered by name)."""

from lavis.processors.base_processor import BaseProcessor, build_processor

__all__ = ["BaseProcessor", "build_processor"]
