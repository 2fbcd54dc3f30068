"""Benchmark evaluation of vision-language models (MME, POPE, MMBench, ScienceQA-IMG, TextVQA)."""
