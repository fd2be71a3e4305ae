"""One precision rule for every path: ``auto`` is bf16 only where it is native (emulated bf16 is an order of magnitude
slower than fp32), fp16 on CUDA devices without bf16; an explicit choice wins."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# oneDNN ISA caps that still include bf16 instructions (AVX512_CORE_BF16, ..._AMX, ..._FP16, AVX10_*, ALL, DEFAULT).
_ISA_WITH_BF16 = ("BF16", "AMX", "FP16", "AVX10", "ALL", "DEFAULT")


@dataclass(frozen=True)
class Precision:
    name: str  # bf16, fp16 or fp32
    reason: str

    def autocast(self, device_type: str):
        """A context manager computing in this precision on ``device_type`` (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16 if self.name == "bf16" else torch.float16)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((set(line.split(":", 1)[1].split()) for line in fh if line.startswith("flags")), set())
    except OSError:
        return set()


@functools.lru_cache(maxsize=None)
def cpu_bf16_native() -> tuple[bool, str]:
    """(native, why): whether bf16 matmuls on this CPU run on bf16 hardware, as oneDNN will use it now."""
    found = [f for f in _BF16_FLAGS if f in _cpu_flags()]
    if not found:
        return False, "this CPU has no AMX or AVX512-BF16, so bf16 would be emulated and much slower than fp32"
    # A cap on oneDNN's ISA (e.g. AVX2, or AVX512_CORE on an AMX machine) turns bf16 into emulation. oneDNN's own check
    # catches caps below AVX-512 but passes AVX512_CORE(_VNNI), which have no bf16 instructions: read the cap too.
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if (isa and not any(word in isa for word in _ISA_WITH_BF16)) or (check is not None and not check()):
        return False, (f"oneDNN will not use the CPU's {'/'.join(found)}"
                       + (f" (ONEDNN_MAX_CPU_ISA={isa})" if isa else "") + ", so bf16 would be emulated")
    return True, f"the CPU has {'/'.join(found)}, where bf16 runs several times faster than fp32"


def resolve_precision(requested: str = "auto", device=None) -> Precision:
    """The precision to compute in on ``device`` (default: CUDA if present, else CPU)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    kind = torch.device(device).type if device is not None else "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        native, why = cpu_bf16_native()
        if requested == "auto":
            return Precision("bf16" if native else "fp32", why)
        if requested == "bf16" and not native:
            _warn_once(f"bf16 was asked for, but {why}; pass precision fp32 (or --fp32) for speed")
            return Precision("bf16", f"as asked; {why}")
        if requested == "fp16":
            raise ValueError("fp16 is for CUDA devices; on a CPU use bf16 (where native) or fp32")
    elif requested == "auto" and kind == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Precision("bf16", "the GPU supports bf16 natively")
        return Precision("fp16", "the GPU has no native bf16; fp16 with loss scaling")
    elif requested == "auto":
        return Precision("fp32", f"device {kind}")
    return Precision(requested, "as asked")


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)
