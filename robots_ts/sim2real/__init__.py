"""What carries a policy from simulation toward a robot: domain randomization (``randomization``)
and export of a run's policy with its manifest (``export``); deployment comes next."""
