"""Codebook fitting and applying: fast, reproducible k-means with no Beam."""
