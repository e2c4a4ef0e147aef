"""Data: the paper's image sets (ImageNet-1k, MOS, OpenOOD v1.5), WordNet candidates and the
embedded world (``world/``)."""
