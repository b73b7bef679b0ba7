"""The mask cache: Zarr v3 sharded arrays of DINO cluster labels, one group per (dataset, split)."""
