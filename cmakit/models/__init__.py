"""CLIP models: the factory (open_clip names, weight files, checkpoints), weight formats,
cmakit's tiny model configs (``configs/*.json``) and the paper's image preprocessing."""
