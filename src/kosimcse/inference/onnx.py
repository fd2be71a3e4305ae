"""ONNX Runtime backends: export a model folder to ONNX (fp32, and int8 by dynamic quantization) in
sentence-transformers' layout, with torch's exporter and ONNX Runtime's quantizer (optimum lacks transformers 5)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from kosimcse.errors import KoSimCSEError, ModelLoadError

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
# ISA -> file: optimum's AutoQuantizationConfig.avx2 quantizes weights to uint8, its avx512_vnni to int8;
# sentence-transformers names the file after the weight type and the ISA.
INT8_FILES = {"avx2": "model_quint8_avx2.onnx", "avx512_vnni": "model_qint8_avx512_vnni.onnx"}
INFO_FILE = "kosimcse_onnx.json"
OPSET = 18
# auto uses int8 only when its vectors stayed this close to fp32 on KorSTS dev sentences at export time.
INT8_MIN_MEAN_COSINE = 0.99
CHECK_SENTENCES = 256


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise KoSimCSEError(f"the ONNX backends need the 'onnx' extra: pip install 'kosimcse[onnx]' ({e})") from None
    return onnxruntime


@functools.lru_cache(maxsize=1)
def cpu_flags() -> dict[str, bool]:
    """The ISA extensions that decide int8/bf16 kernels: AVX2, AVX-512F, AVX-512 VNNI, AVX-VNNI, AMX."""
    from kosimcse.precision import _cpu_flags

    flags = _cpu_flags()
    return {**{name: name in flags for name in ("avx2", "avx512f", "avx512_vnni", "avx_vnni")},
            "amx": bool(flags & {"amx_int8", "amx_bf16", "amx_tile"})}


def int8_isa() -> str:
    return "avx512_vnni" if cpu_flags()["avx512_vnni"] else "avx2"


def onnx_file(root: str | os.PathLike, backend: str) -> Path:
    """The graph a backend runs in ``root``: ``onnx/model.onnx`` or this CPU's int8 file."""
    return Path(root) / ONNX_DIR / (FP32_FILE if backend == "onnx" else INT8_FILES[int8_isa()])


def read_export_info(root: str | os.PathLike) -> dict:
    try:
        return json.loads((Path(root) / ONNX_DIR / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _say(message: str) -> None:
    print(f"kosimcse: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet():
    """Mute the exporter's and quantizer's warnings: none concerns a text encoder, and our progress lines say enough."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(action="ignore"):
            yield
    finally:
        logging.disable(logging.NOTSET)


def _needs_hidden_states(root: Path, pooler: str) -> bool:
    """Whether the graph must return every layer's states; a pooling no graph can serve (prompt) is refused."""
    from kosimcse.modeling.pooling import needs_hidden_states

    try:
        return needs_hidden_states(pooler)
    except ValueError:
        raise ModelLoadError(f"{root}: pooling {pooler!r} cannot run on the ONNX backends (only cls/"
                             "cls_before_pooler/mean/avg/avg_first_last/avg_top2); use --backend torch") from None


def export_onnx(path: str | os.PathLike, *, pooling: str | None = None, quantize: tuple[str, ...] | None = None,
                allow_pickle: bool = False, trust_remote_code: bool = False, progress=_say) -> dict[str, Path]:
    """Write ``onnx/model.onnx`` and int8 variants (``quantize``: ISAs among ``avx2``/``avx512_vnni``; default avx2
    plus this CPU's) into the model folder ``path``; returns ``{name: file}``. ``pooling`` (default: the saved one)
    decides whether the graph also returns every layer's hidden states."""
    require_onnxruntime()
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    from kosimcse.loading.resolve import load_encoder

    quantize = tuple(quantize) if quantize is not None else tuple(dict.fromkeys(("avx2", int8_isa())))
    unknown = [q for q in quantize if q not in INT8_FILES]
    if unknown:
        raise KoSimCSEError(f"unknown quantization config {unknown}; choose among {', '.join(INT8_FILES)}")
    loaded = load_encoder(path, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, pooler=pooling)
    root, chosen = loaded.path, loaded.model.config.pooler
    hidden = _needs_hidden_states(root, chosen)
    out_dir = root / ONNX_DIR
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise KoSimCSEError(f"cannot write the ONNX export into {out_dir}: {e}") from None
    # Two sentences of different lengths, so the traced graph sees padding and a real batch.
    sample = loaded.tokenizer(["한 남자가 기타를 치고 있다.", "비"], padding=True, return_tensors="pt")
    input_names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample]
    encoder = loaded.model.encoder.float().eval()
    layers = int(encoder.config.num_hidden_layers)
    output_names = ["last_hidden_state"] + ([f"hidden_states.{i}" for i in range(layers + 1)] if hidden else [])

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = encoder

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            out = self.model(**{k: given[k] for k in input_names}, output_hidden_states=hidden, return_dict=True)
            return (out.last_hidden_state, *out.hidden_states) if hidden else out.last_hidden_state

    start = time.perf_counter()
    progress(f"exporting {root.name} to ONNX (once; written to {out_dir})")
    fp32 = out_dir / FP32_FILE
    dims = {0: torch.export.Dim("batch_size"), 1: torch.export.Dim("sequence_length")}
    # torch.export-based exporter: the TorchScript tracer bakes transformers 5's mask shortcuts into constants
    # and gives wrong vectors for other padding patterns.
    with torch.no_grad(), _quiet():
        torch.onnx.export(Graph(), tuple(sample[k] for k in input_names), fp32, input_names=input_names,
                          output_names=output_names, opset_version=OPSET, dynamo=True, external_data=False,
                          dynamic_shapes={k: dims for k in input_names}, verbose=False)
    files = {"onnx": fp32}
    for isa in quantize:
        target = out_dir / INT8_FILES[isa]
        progress(f"quantizing to int8 for {isa} -> {target.name}")
        # optimum's AutoQuantizationConfig.<isa>(is_static=False): per-channel symmetric weights, asymmetric uint8
        # activations, its default operator list; avx2 keeps uint8 weights, avx512_vnni int8.
        with _quiet():
            quantize_dynamic(fp32, target, op_types_to_quantize=list(IntegerOpsRegistry), per_channel=True,
                             reduce_range=False, weight_type=QuantType.QUInt8 if isa == "avx2" else QuantType.QInt8,
                             extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        files[f"onnx-int8-{isa}"] = target
    info = {"pooling": chosen, "hidden_states": hidden, "opset": OPSET, "files": {k: v.name for k, v in files.items()}}
    if quantize:
        info["int8_mean_cosine_to_fp32"] = int8_agreement(loaded, files)
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    progress(f"ONNX export done in {time.perf_counter() - start:.0f} s")
    return files


def int8_agreement(loaded, files: dict[str, Path]) -> dict[str, float]:
    """Mean cosine of each int8 graph's vectors to the torch fp32 model's on KorSTS dev sentences, so that ``auto``
    can skip an int8 graph that drifts."""
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.modeling.model import SimCSEModel

    pairs = load_sts_task("korsts-dev")
    texts = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))[:CHECK_SENTENCES]
    model = loaded.model
    ref = model.encode(loaded.tokenizer, texts, batch_size=32, device="cpu", normalize=True)
    result = {}
    for name, path in files.items():
        if name.startswith("onnx-int8-"):
            graph = SimCSEModel.for_inference(OnnxEncoder(path, model.encoder.config), model.config, model.head)
            emb = graph.encode(loaded.tokenizer, texts, batch_size=32, device="cpu", normalize=True)
            result[name.removeprefix("onnx-int8-")] = round(float(np.mean(np.sum(emb * ref, axis=1))), 6)
    return result


class OnnxEncoder:
    """An ONNX Runtime session that answers like a transformers encoder, so ``SimCSEModel`` runs it as the torch one."""

    def __init__(self, file: str | os.PathLike, config):
        self.file, self.config = Path(file), config
        self.session = require_onnxruntime().InferenceSession(str(file), providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.has_hidden_states = len(self.session.get_outputs()) > 1

    def __call__(self, output_hidden_states: bool = False, return_dict: bool = True, **batch):
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        feeds = {name: batch[name].cpu().numpy().astype(np.int64) for name in self.input_names}
        outputs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        return BaseModelOutput(last_hidden_state=outputs[0],
                               hidden_states=tuple(outputs[1:]) if output_hidden_states else None)


def resolve_backend(backend: str, root: str | os.PathLike, device) -> str:
    """``auto`` -> ``onnx-int8`` where this CPU's int8 export exists and its check kept its vectors within
    ``INT8_MIN_MEAN_COSINE`` of fp32, else ``torch``."""
    if backend not in BACKENDS:
        raise KoSimCSEError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend != "auto":
        return backend
    import torch

    try:
        require_onnxruntime()
    except KoSimCSEError:
        return "torch"
    agreement = read_export_info(root).get("int8_mean_cosine_to_fp32", {}).get(int8_isa()) or 0.0
    usable = torch.device(device).type == "cpu" and onnx_file(root, "onnx-int8").is_file()
    return "onnx-int8" if usable and agreement >= INT8_MIN_MEAN_COSINE else "torch"


def load_onnx_encoder(path_or_id, backend: str, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                      **settings):
    """``load_encoder`` with this backend's ONNX graph as the encoder, building the export on first use (the torch
    weights are read only for that)."""
    require_onnxruntime()
    from transformers import AutoConfig

    from kosimcse.loading.resolve import load_encoder, read_config, resolve_model

    root = resolve_model(path_or_id, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    chosen = settings.get("pooler") or read_config(root).pooler
    hidden = _needs_hidden_states(root, chosen)
    file = onnx_file(root, backend)
    if not file.is_file() or (hidden and not read_export_info(root).get("hidden_states", False)):
        export_onnx(root, pooling=chosen, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    loaded = load_encoder(root, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, **settings,
                          load_model=lambda folder: OnnxEncoder(file, AutoConfig.from_pretrained(
                              folder, trust_remote_code=trust_remote_code)))
    if hidden and not loaded.model.encoder.has_hidden_states:
        raise ModelLoadError(f"{file} returns only the last layer, but pooling {chosen!r} needs every layer")
    return loaded
