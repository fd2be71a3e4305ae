"""Inference: ``KoSimCSE.from_pretrained`` with encode / similarity / search."""
