"""The OC-ZSS model: prompted frozen CLIP with object prompts, ORA with granular attention, OTSeg decoder."""
