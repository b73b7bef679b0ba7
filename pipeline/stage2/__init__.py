"""Stage 2: training from the mask cache, evaluation, inference and prediction, checkpoints and recipes."""
