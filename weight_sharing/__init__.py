"""Retraining-free weight sharing: per-layer codebooks and their exploration.

The library behind the Snakemake workflow; it never imports snakemake.
"""
__version__ = "0.2.0"
