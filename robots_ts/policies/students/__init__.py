"""Students: the networks that act from what a real robot has (proprio plus depth or points).

``config`` (architecture and augmentation), ``networks`` (depth CNN / PointNet, recurrent core, aux
head), ``checkpoint`` (safetensors + JSON checkpoints and the student as a
:class:`~robots_ts.policies.Policy`). Nothing is imported here, so reading a config does not load torch.
"""
