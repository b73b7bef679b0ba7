"""Datasets on disk, image decoding, the joint image / label / cluster-map transforms and the demo scenes."""
