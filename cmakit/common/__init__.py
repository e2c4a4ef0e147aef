"""Foundations every part may import: strict configs, atomic I/O and fingerprints, shared constants.

Nothing here imports another part of cmakit.
"""
