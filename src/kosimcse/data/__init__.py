"""Data layer: readers, Korean text, corpus preparation, NLI triplets, the eval-set registry (no torch here)."""
