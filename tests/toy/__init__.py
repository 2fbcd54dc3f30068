"""Toy components (a tiny classifier, a toy task, toy datasets) for fast runner tests.

Nothing here is registered at import: tests pass these objects to runners directly, and the
CLI-level tests register them only inside their subprocesses (see ``launch.py``).
"""
