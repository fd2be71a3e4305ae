"""ONNX Runtime backends: export a model folder to ONNX (fp32, and int8 by dynamic quantization) and run it.

The files follow sentence-transformers' layout (``onnx/model.onnx``, ``onnx/model_quint8_avx2.onnx``,
``onnx/model_qint8_avx512_vnni.onnx``: the names its ``export_dynamic_quantized_onnx_model`` gives), with the
inputs and the ``last_hidden_state`` output of optimum's feature-extraction export, so
``SentenceTransformer(path, backend="onnx", model_kwargs={"file_name": ...})`` loads them. The export is
built with torch's ONNX exporter and ONNX Runtime's dynamic quantizer (with optimum's per-ISA settings)
rather than through optimum itself: no optimum release runs with transformers 5 yet.

Pooling, the optional Dense head and normalisation stay in torch, in ``SimCSEModel.encode``: the graph replaces
only the encoder's forward, so every backend shares one encode path.
"""

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
EXTRA_HINT = "pip install 'kosimcse[onnx]'"
ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
# ISA -> (file name, weight type): optimum's AutoQuantizationConfig.avx2 quantizes weights to uint8, its
# avx512_vnni to int8; sentence-transformers names the file after the weight type and the ISA.
INT8_FILES = {"avx2": "model_quint8_avx2.onnx", "avx512_vnni": "model_qint8_avx512_vnni.onnx"}
INFO_FILE = "kosimcse_onnx.json"
OPSET = 18
# auto uses int8 only when its vectors stayed this close to fp32 on KorSTS dev sentences at export time
# (the acceptance bar for int8).
INT8_MIN_MEAN_COSINE = 0.99
CHECK_SENTENCES = 256


def require_onnxruntime():
    """Import onnxruntime or fail with the extra to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise KoSimCSEError(f"the ONNX backends need the 'onnx' extra: {EXTRA_HINT} ({e})") from None
    return onnxruntime


def onnx_available() -> bool:
    try:
        require_onnxruntime()
    except KoSimCSEError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def cpu_flags() -> dict[str, bool]:
    """The ISA extensions that decide int8/bf16 kernels: AVX2, AVX-512F, AVX-512 VNNI, AVX-VNNI, AMX."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "avx512_vnni": "avx512_vnni" in flags,
            "avx_vnni": "avx_vnni" in flags, "amx": bool(flags & {"amx_int8", "amx_bf16", "amx_tile"})}


def int8_isa() -> str:
    """The quantization config that suits this CPU: avx512_vnni where it exists, else avx2."""
    return "avx512_vnni" if cpu_flags()["avx512_vnni"] else "avx2"


def onnx_file(root: str | os.PathLike, backend: str) -> Path:
    """The graph a backend runs in ``root``: ``onnx/model.onnx`` or this CPU's int8 file."""
    name = FP32_FILE if backend == "onnx" else INT8_FILES[int8_isa()]
    return Path(root) / ONNX_DIR / name


def read_export_info(root: str | os.PathLike) -> dict:
    path = Path(root) / ONNX_DIR / INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _say(message: str) -> None:
    print(f"kosimcse: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet():
    """Mute the exporter's and quantizer's warnings (missing torchvision ops, advice to pre-process, axis renames):
    none concerns a text encoder, and our own progress lines say what is happening."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _graph_module(model, input_names: list[str], hidden_outputs: bool):
    """The encoder's forward for export: token ids in, the last hidden state (plus every layer's, for the
    layer-averaging poolers) out."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            out = self.model(**{k: given[k] for k in input_names}, output_hidden_states=hidden_outputs,
                             return_dict=True)
            return (out.last_hidden_state, *out.hidden_states) if hidden_outputs else out.last_hidden_state

    return Graph()


def export_onnx(path: str | os.PathLike, *, pooling: str | None = None, quantize: tuple[str, ...] | None = None,
                allow_pickle: bool = False, trust_remote_code: bool = False, progress=_say) -> dict[str, Path]:
    """Write ``onnx/model.onnx`` and int8 variants (``quantize``: ISAs among ``avx2``/``avx512_vnni``; default avx2
    plus avx512_vnni where this CPU has it) into the model folder ``path``. Returns ``{name: file}``.

    ``pooling`` (default: the one saved with the model) decides whether the graph also returns every layer's
    hidden states (``avg_first_last``/``avg_top2``). A prompt-pooling model is refused: its vector is one token's
    state inside a template, which neither this runner nor sentence-transformers' modules express.
    """
    require_onnxruntime()
    import torch

    from kosimcse.loading.resolve import load_encoder
    from kosimcse.modeling.pooling import canonical_pooler, needs_hidden_states

    quantize = tuple(quantize) if quantize is not None else tuple(dict.fromkeys(("avx2", int8_isa())))
    unknown = [q for q in quantize if q not in INT8_FILES]
    if unknown:
        raise KoSimCSEError(f"unknown quantization config {unknown}; choose among {', '.join(INT8_FILES)}")
    loaded = load_encoder(path, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, pooler=pooling)
    root = loaded.path
    chosen = loaded.model.config.pooler
    try:
        canonical_pooler(chosen)
    except ValueError:
        raise ModelLoadError(f"{root}: pooling {chosen!r} cannot be exported to ONNX (only "
                             "cls/cls_before_pooler/mean/avg/avg_first_last/avg_top2); use --backend torch") from None
    hidden = needs_hidden_states(chosen)
    out_dir = root / ONNX_DIR
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise KoSimCSEError(f"cannot write the ONNX export into {out_dir}: {e}") from None
    tokenizer = loaded.tokenizer
    # Two sentences of different lengths, so the traced graph sees padding and a real batch.
    sample = tokenizer(["한 남자가 기타를 치고 있다.", "비"], padding=True, return_tensors="pt")
    input_names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample]
    layers = int(loaded.model.encoder.config.num_hidden_layers)
    output_names = ["last_hidden_state"] + ([f"hidden_states.{i}" for i in range(layers + 1)] if hidden else [])
    batch, seq = torch.export.Dim("batch_size"), torch.export.Dim("sequence_length")
    start = time.perf_counter()
    progress(f"exporting {root.name} to ONNX (once; written to {out_dir})")
    fp32 = out_dir / FP32_FILE
    model = loaded.model.encoder.float().eval()
    # torch's exporter (the torch.export-based one): the TorchScript tracer bakes transformers 5's mask
    # shortcuts into constants and gives wrong vectors for other padding patterns.
    with torch.no_grad(), _quiet():
        torch.onnx.export(_graph_module(model, input_names, hidden), tuple(sample[k] for k in input_names), fp32,
                          input_names=input_names, output_names=output_names, opset_version=OPSET, dynamo=True,
                          dynamic_shapes={k: {0: batch, 1: seq} for k in input_names}, external_data=False,
                          verbose=False)
    files = {"onnx": fp32}
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

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
    check = int8_agreement(loaded, files)
    if check is not None:
        info["int8_mean_cosine_to_fp32"] = check
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    progress(f"ONNX export done in {time.perf_counter() - start:.0f} s")
    return files


def int8_agreement(loaded, files: dict[str, Path]) -> dict[str, float] | None:
    """Mean cosine of each int8 graph's vectors to the torch fp32 model's on KorSTS dev sentences, saved with the
    export so ``auto`` can skip an int8 graph that drifts (as a random or badly scaled model's does)."""
    from kosimcse.data.tasks import load_sts_task
    from kosimcse.modeling.model import SimCSEModel

    pairs = load_sts_task("korsts-dev")
    texts = list(dict.fromkeys(s for p in pairs for s in (p.sentence1, p.sentence2)))[:CHECK_SENTENCES]
    torch_model = loaded.model
    common = dict(batch_size=32, device="cpu", normalize=True)
    ref = torch_model.encode(loaded.tokenizer, texts, **common)
    result = {}
    for name, path in files.items():
        if not name.startswith("onnx-int8-"):
            continue
        graph = SimCSEModel.for_inference(OnnxEncoder(path, torch_model.encoder.config), torch_model.config,
                                          torch_model.head)
        emb = graph.encode(loaded.tokenizer, texts, **common)
        result[name.removeprefix("onnx-int8-")] = round(float(np.mean(np.sum(emb * ref, axis=1))), 6)
    return result or None


class _Output:
    def __init__(self, last_hidden_state, hidden_states):
        self.last_hidden_state = last_hidden_state
        self.hidden_states = hidden_states


class OnnxEncoder:
    """An ONNX Runtime session that answers like a transformers encoder (``last_hidden_state``, ``hidden_states``),
    so ``SimCSEModel`` runs it exactly as it runs the torch model."""

    training = False

    def __init__(self, file: str | os.PathLike, config, session_options=None):
        ort = require_onnxruntime()
        file = Path(file)
        if not file.is_file():
            raise ModelLoadError(f"{file} does not exist; KoSimCSE.from_pretrained(..., backend=...) builds it")
        try:
            self.session = ort.InferenceSession(str(file), sess_options=session_options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelLoadError(f"{file}: ONNX Runtime cannot load it ({type(e).__name__}: {e})") from None
        self.file = file
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def has_hidden_states(self) -> bool:
        return len(self.output_names) > 1

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def __call__(self, output_hidden_states: bool = False, return_dict: bool = True, **batch):
        import torch

        if output_hidden_states and not self.has_hidden_states:
            raise ModelLoadError(f"{self.file} returns only the last layer; re-export it with the layer-averaging "
                                 "pooling (kosimcse.inference.onnx.export_onnx(path, pooling=...)) or use --backend torch")
        feeds = {name: batch[name].cpu().numpy().astype(np.int64) for name in self.input_names}
        outputs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        return _Output(outputs[0], tuple(outputs[1:]) if output_hidden_states else None)


def resolve_backend(backend: str, root: str | os.PathLike, device) -> str:
    """``auto`` -> ``onnx-int8`` where this CPU's int8 export exists, the extra is installed and the export's
    check kept its vectors within ``INT8_MIN_MEAN_COSINE`` of fp32; else ``torch``."""
    if backend not in BACKENDS:
        raise KoSimCSEError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend != "auto":
        return backend
    import torch

    if torch.device(device).type != "cpu" or not onnx_available() or not onnx_file(root, "onnx-int8").is_file():
        return "torch"
    agreement = read_export_info(root).get("int8_mean_cosine_to_fp32", {}).get(int8_isa())
    return "onnx-int8" if agreement is not None and agreement >= INT8_MIN_MEAN_COSINE else "torch"


def load_onnx_encoder(path_or_id, backend: str, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                      **settings):
    """``LoadedEncoder`` whose model runs this backend's ONNX graph; builds the export on first use. The torch
    weights are read only to build it, so an exported folder runs without them in memory. ``settings`` override
    the saved config, as in ``load_encoder``."""
    require_onnxruntime()
    from transformers import AutoConfig, AutoTokenizer

    from kosimcse.loading.resolve import LoadedEncoder, inference_model, read_config, resolve_model, transformer_dir
    from kosimcse.modeling.pooling import needs_hidden_states

    root = resolve_model(path_or_id, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    chosen = settings.get("pooler") or read_config(root).pooler
    try:
        hidden = needs_hidden_states(chosen)
    except ValueError:
        raise ModelLoadError(f"{root}: pooling {chosen!r} cannot run on the ONNX backends (only "
                             "cls/cls_before_pooler/mean/avg/avg_first_last/avg_top2); use --backend torch") from None
    file = onnx_file(root, backend)
    if not file.is_file() or (hidden and not read_export_info(root).get("hidden_states", False)):
        export_onnx(root, pooling=chosen, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    folder = transformer_dir(root)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ModelLoadError(f"could not load the tokenizer/config in {folder}: {type(e).__name__}: {e}") from None
    graph = OnnxEncoder(file, config)
    if hidden and not graph.has_hidden_states:
        raise ModelLoadError(f"{file} returns only the last layer, but pooling {chosen!r} needs every layer")
    return LoadedEncoder(inference_model(graph, tokenizer, root, **settings), tokenizer, root)
