"""Everything that touches files, datasets and caches, by what it serves:

    data/     datasets, image decoding, transforms, the demo scenes
    stage1/   precompute (DINO + FPS-Voronoi into the mask cache) and the cache commands
    stage2/   training, evaluation, inference and prediction, metrics, checkpoints, recipes
    demo.py   the whole pipeline on the demo dataset; render.py, runtime.py, console.py: shared by both stages
"""
