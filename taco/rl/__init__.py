"""TACO-RL training: the policy, REINFORCE math, rewards, optimiser, ranks, checkpoints,
training rows, and the ``warmstart`` and ``train`` stages."""
