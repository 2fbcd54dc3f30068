"""Registered runners (epoch-based and iteration-based) and what they are built from.

- ``base_runner``: the :class:`BaseRunner` contract and :class:`TrainRunnerBase`, the shared loop
  (devices, DDP, mixed precision, accumulation, clipping, evaluation, logging);
- ``runner_epoch`` / ``runner_iter``: the registered ``runner_epoch`` and ``runner_iter``;
- ``data``: resumable distributed sampling and per-sample seeded augmentation;
- ``checkpointing``: checkpoint contents, atomic writes and exact resume;
- ``precision``: what ``run.amp`` means on a device.
"""
