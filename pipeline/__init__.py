"""Datasets, transforms, Stage 1 (DINO + FPS-Voronoi precompute) and Stage 2 loops."""

from oczss.pipeline.clustering import fps_voronoi

__all__ = ["fps_voronoi"]
