"""Residual RL (ResiP): PPO on a small correction added to a frozen student's action, and the
baseline it is compared with, PPO on the whole student.

``env`` wraps the batched env so the frozen base acts inside it (and the share schedule decides
which episodes the refined policy acts in); ``policy`` holds the residual's actor-critic
(zero-initialized mean head, optional asymmetric critic, an actor path that reads sensors only),
the critic warm-up and the refined policy (base + residual) as a Policy; ``finetune`` the
student-as-actor policy of ``mode=finetune``; ``train`` runs ``robots-ts refine`` and loads its runs.
"""
