"""Modeling: pooling, the SimCSE model (encoder + pooler + MLP head), its losses and objectives."""
