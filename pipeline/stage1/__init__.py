"""Stage 1: DINO features clustered into the mask cache, and the commands that inspect the cache."""
