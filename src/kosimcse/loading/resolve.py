"""Find and load an encoder safely: local folder or Hub id, safetensors only unless pickle is allowed, failing fast
offline."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any, NamedTuple

from kosimcse.errors import ModelLoadError

log = logging.getLogger(__name__)

AIRGAP_ALIAS = "e5-small-airgap"
KOSIMCSE_CONFIG = "kosimcse_config.json"
HUB_PROBE_TIMEOUT_S = 3.0
# What a model folder that says nothing about its pooling gets (sentence-transformers' defaults).
DEFAULT_POOLING = "mean"
DEFAULT_MAX_LENGTH = 128

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Hub ids are "name" or "owner/name" of letters, digits, - _ . (no "..", no leading separator).
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
# Files a snapshot needs; leaving out *.bin keeps pickles (and a second copy of the weights) off disk.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.md", "1_Pooling/*", "2_Normalize/*"]
# Activations a saved Dense module may name; anything else is refused rather than imported by name.
_DENSE_ACTIVATIONS = {"torch.nn.modules.activation.Tanh": "Tanh", "torch.nn.modules.linear.Identity": "Identity",
                      "torch.nn.modules.activation.ReLU": "ReLU", "torch.nn.modules.activation.GELU": "GELU"}

OFFLINE_HELP = (
    "Offline options: pass a local model folder (--model /path/to/folder with config.json, tokenizer and "
    "*.safetensors), or use the air-gapped multilingual-e5-small: run `kosimcse import-e5` once, or pass "
    f"--model {AIRGAP_ALIAS}."
)


class LoadedEncoder(NamedTuple):
    model: Any  # a SimCSEModel in eval mode: the encoder (torch, or an ONNX graph), its config and saved head
    tokenizer: Any
    path: Path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"{path}: unreadable JSON ({e})") from None


def _modules(root: Path) -> list[tuple[str, Path]]:
    """``(kind, folder)`` of each module in a sentence-transformers ``modules.json``."""
    if not (root / "modules.json").is_file():
        return []
    return [(str(m.get("type", "")).rsplit(".", 1)[-1], root / m.get("path", ""))
            for m in _read_json(root / "modules.json") if isinstance(m, dict)]


def transformer_dir(root: Path) -> Path:
    """The folder holding the Hugging Face model: the root, or a sentence-transformers folder's Transformer module."""
    return next((sub for kind, sub in _modules(root) if kind == "Transformer" and sub.is_dir()), root)


def check_weights(folder: Path, allow_pickle: bool = False) -> str:
    """Return ``"safetensors"`` or ``"pickle"``; refuse a pickle-only folder unless ``allow_pickle``."""
    folder = transformer_dir(folder)
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.name.endswith((".safetensors", ".safetensors.index.json")) for p in files):
        return "safetensors"
    pickles = sorted(p.name for p in files if p.suffix in _PICKLE_SUFFIXES and "tokenizer" not in p.name
                     and p.name != "training_args.bin")
    if not pickles:
        raise ModelLoadError(f"{folder} has no model weights (*.safetensors); is this a Hugging Face model folder?")
    if not allow_pickle:
        raise ModelLoadError(
            f"{folder} has only pickle weights ({', '.join(pickles)}), which can run arbitrary code when loaded; "
            "refusing. Convert them to safetensors (load once in a trusted environment and "
            "`model.save_pretrained(folder, safe_serialization=True)`), or pass --allow-pickle if you trust the file."
        )
    log.warning("loading pickle weights %s from %s: only do this for files you trust", pickles, folder)
    return "pickle"


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to the Hub endpoint opens within ``timeout`` seconds, DNS included (hence the daemon
    thread: a hanging resolver cannot stall us past the deadline)."""
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    address = (endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80))
    result = []

    def probe():
        with contextlib.suppress(OSError):
            socket.create_connection(address, timeout=timeout).close()
            result.append(True)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result)


def _from_hub(repo_id: str, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download

    patterns = _HUB_PATTERNS + (["*.bin"] if allow_pickle else [])
    with contextlib.suppress(Exception):  # a model already in the local Hub cache needs no network at all
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        raise ModelLoadError(
            f"{repo_id!r} is not a local folder and is not in the Hugging Face cache, and the Hub is disabled "
            f"(HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set). {OFFLINE_HELP}"
        )
    if not hub_reachable():
        raise ModelLoadError(f"{repo_id!r} is not a local folder and the Hugging Face Hub is unreachable "
                             f"(no connection within {HUB_PROBE_TIMEOUT_S:g} s). {OFFLINE_HELP}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10))
    except Exception as e:
        raise ModelLoadError(f"could not download {repo_id!r} from the Hugging Face Hub: {e}. {OFFLINE_HELP}") from None


def resolve_model(name_or_path: str | os.PathLike, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> Path:
    """A local folder holding loadable weights for ``name_or_path`` (a folder, a Hub id, or ``e5-small-airgap``);
    resolving never runs model code, whatever ``trust_remote_code`` says."""
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if name == AIRGAP_ALIAS:
        from kosimcse.loading import airgap

        folder = Path(airgap.ensure_e5_small())
    elif path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; --model needs a model folder (config.json, tokenizer, weights)")
        folder = path.resolve()
    elif not _HUB_ID.match(name) or ".." in name:
        raise ModelLoadError(f"model folder {path} does not exist (and {name!r} is not a Hub id). {OFFLINE_HELP}")
    else:
        folder = _from_hub(name, allow_pickle)
    check_weights(folder, allow_pickle)
    return folder


def _pooling_mode(config: dict) -> str | None:
    """A sentence-transformers Pooling config's one mode as a ``SimCSEConfig`` pooler, or None if unsupported."""
    mode = config.get("pooling_mode")
    if mode is None:  # sentence-transformers < 5 wrote one boolean per mode
        mode = [k.removeprefix("pooling_mode_") for k, v in config.items() if k.startswith("pooling_mode_") and v]
    modes = [mode] if isinstance(mode, str) else list(mode)
    mapping = {"cls": "cls", "cls_token": "cls", "mean": "mean", "mean_tokens": "mean"}
    return mapping.get(modes[0]) if len(modes) == 1 else None


def read_config(root: str | os.PathLike):
    """The ``SimCSEConfig`` saved with a model: its ``kosimcse_config.json``, else what its sentence-transformers
    modules imply, else mean pooling, no prefix, 128 tokens."""
    from kosimcse.modeling.model import SimCSEConfig

    root = Path(root)
    if (root / KOSIMCSE_CONFIG).is_file():
        return SimCSEConfig.from_dict(_read_json(root / KOSIMCSE_CONFIG))
    settings: dict[str, Any] = {"pooler": DEFAULT_POOLING, "inference_max_length": DEFAULT_MAX_LENGTH}
    if not (root / "modules.json").is_file():
        log.info("%s saves no pooling: using %s", root, DEFAULT_POOLING)
    for kind, sub in _modules(root):
        if kind == "Pooling" and (sub / "config.json").is_file():
            pooling = _read_json(sub / "config.json")
            if pooler := _pooling_mode(pooling):
                settings["pooler"] = pooler
            else:
                log.warning("%s: pooling %s is not supported here; pass --pooling", sub / "config.json", pooling)
        elif kind == "Normalize":
            settings["normalize"] = True
        elif kind == "Transformer" and (sub / "sentence_bert_config.json").is_file():
            settings["inference_max_length"] = (_read_json(sub / "sentence_bert_config.json").get("max_seq_length")
                                                or settings["inference_max_length"])
    if (root / "config_sentence_transformers.json").is_file():
        stc = _read_json(root / "config_sentence_transformers.json")
        if stc.get("default_prompt_name") and isinstance(stc.get("prompts"), dict):
            settings["prefix"] = stc["prompts"].get(stc["default_prompt_name"]) or ""
    return SimCSEConfig(**settings)


def load_dense_head(root: str | os.PathLike):
    """The sentence-transformers ``Dense`` modules (e.g. SimCSE's inference MLP) as one torch module, or ``None``;
    weights are read from safetensors only."""
    import torch
    from safetensors.torch import load_file

    from kosimcse.modeling.model import MLPHead

    layers = []
    for sub in (sub for kind, sub in _modules(Path(root)) if kind == "Dense"):
        cfg = _read_json(sub / "config.json")
        if not (sub / "model.safetensors").is_file():
            raise ModelLoadError(f"{sub}: Dense module without model.safetensors (pickle heads are not loaded)")
        activation = _DENSE_ACTIVATIONS.get(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"))
        if activation is None:
            raise ModelLoadError(f"{sub}: unsupported Dense activation {cfg.get('activation_function')!r}")
        layer = MLPHead(int(cfg["in_features"]), int(cfg["out_features"]), getattr(torch.nn, activation)(),
                        bias=bool(cfg.get("bias", True)))
        state = load_file(sub / "model.safetensors")
        layer.dense.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
        layers.append(layer)
    if not layers:
        return None
    return (layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)).eval()


def load_encoder(name_or_path: str | os.PathLike, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                 load_model=None, **settings) -> LoadedEncoder:
    """Resolve and load ``(model, tokenizer, folder)``: a ``SimCSEModel`` in eval mode over the folder's encoder (or
    ``load_model(folder)``'s, e.g. an ONNX graph) and saved head, with the non-None ``settings`` (``SimCSEConfig``
    fields) over its saved config."""
    from dataclasses import replace

    from transformers import AutoModel, AutoTokenizer

    from kosimcse.modeling.model import SimCSEModel

    root = resolve_model(name_or_path, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    folder = transformer_dir(root)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        # resolve_model checked the weights: safetensors are there unless pickles were allowed (then preferred).
        encoder = load_model(folder) if load_model else AutoModel.from_pretrained(
            folder, use_safetensors=None if allow_pickle else True, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelLoadError(f"could not load the model in {folder}: {type(e).__name__}: {e}") from None
    config = replace(read_config(root), **{k: v for k, v in settings.items() if v is not None})
    if config.mask_token_id is None:
        config.mask_token_id = tokenizer.mask_token_id
    try:
        model = SimCSEModel.for_inference(encoder, config, load_dense_head(root))
    except ValueError as e:
        raise ModelLoadError(f"{root}: {e}") from None
    return LoadedEncoder(model, tokenizer, root)
