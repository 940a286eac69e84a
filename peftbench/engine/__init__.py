"""Training engine: optimizers and schedules, the train/eval loop, and measurements."""
