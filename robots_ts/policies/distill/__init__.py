"""Distilling a student from a teacher: DAgger and behaviour cloning.

``config`` (the typed run config and beta schedule), ``rollout`` (teacher-labelled collection and
student evaluation on the batched env), ``dataset`` (the on-disk aggregate), ``train`` (supervised
epochs on it), ``report`` (curves and TensorBoard), ``dagger`` (the iteration loop, run directory,
resume and the ``robots-ts distill`` command), ``multi`` (several teachers, one per task, into one
student).
"""
