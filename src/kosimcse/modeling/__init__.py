"""Modeling: pooling, the SimCSE model (encoder + pooler + training-only MLP head), losses, and the air-gapped encoder importer."""
