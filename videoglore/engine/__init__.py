"""Training, testing, checkpoints and logs."""
