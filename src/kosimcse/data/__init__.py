"""Data layer: readers of every Korean format, Korean text normalisation and splitting, corpus preparation, task registry.

Nothing here imports torch or the modeling code: the flow only goes forward.
"""
