"""Post-training tasks on the VLM seam (:mod:`lavis.models.vlm`): ``sft``, ``dpo``, ``reward_model``,
``ppo``, ``grpo``.

Each task owns its loss and its extra models (the DPO/GRPO reference); the runner only sees
``train_step`` returning a :class:`~lavis.models.base_model.ModelOutput` with ``extras`` to log.
"""
