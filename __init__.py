"""oczss: zero-shot semantic segmentation with object-centric refinement (OC-ZSS, ICLR 2026).

Stage 1 (`oczss.pipeline.stage1.precompute`) writes DINO FPS-Voronoi cluster labels into a sharded Zarr cache
(`oczss.cache`); Stage 2 trains and evaluates the OC-ZSS model (`oczss.model`) from that cache.
"""

import importlib.metadata

__version__ = importlib.metadata.version("oczss")  # one source: pyproject.toml
