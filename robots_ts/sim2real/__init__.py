"""What carries a policy from simulation toward a robot: domain randomization (``randomization``);
export and deployment come next."""
