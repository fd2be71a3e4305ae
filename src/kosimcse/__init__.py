"""KoSimCSE: Korean SimCSE sentence embeddings, from unlabeled text to an STS-proven model."""

__version__ = "0.1.0"

from kosimcse.errors import DataError, KoSimCSEError  # noqa: E402

__all__ = ["DataError", "KoSimCSEError", "__version__"]


def __getattr__(name):
    # The inference API pulls in torch/transformers; import it lazily so that
    # `import kosimcse` (and the data layer) stays cheap.
    if name == "KoSimCSE":
        from kosimcse.inference.encoder import KoSimCSE

        return KoSimCSE
    raise AttributeError(name)
