"""Training: optimizers and schedules, the step, evaluation, checkpoints, metrics, the trainer."""
