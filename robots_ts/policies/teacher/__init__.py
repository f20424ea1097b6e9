"""PPO teachers on privileged state.

``config`` (the typed run config), ``train`` (SB3 PPO on the batched env: checkpoints, evaluation,
resume), ``load`` (a trained teacher from its run directory as a :class:`~robots_ts.policies.Policy`).
Nothing is imported here, so reading a config does not load Stable-Baselines3 or torch.
"""
