"""Registered reward functions for RL post-training (GRPO, PPO).

A reward is a function registered with ``@registry.register_reward("name")``; the registry finds
it by scanning this package, like every other kind.
"""
