"""Stage 1: a source's frozen model over every image into its cache (DINO clusters, CLIP K-Means candidates or
DINOv2 tokens; sources/), the readers training uses, and the commands that inspect a cache."""
