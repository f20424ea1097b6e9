"""Residual RL (ResiP): PPO on a small correction added to a frozen student's action.

``env`` wraps the batched env so the frozen base acts inside it; ``policy`` holds the residual's
actor-critic (zero-initialized mean head, optional asymmetric critic), the critic warm-up and the
refined policy (base + residual) as a Policy; ``train`` runs ``robots-ts refine``.
"""
