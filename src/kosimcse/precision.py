"""One precision rule for every path (training, evaluation, encoding, benchmarks): bf16 only where it is fast.

``auto`` resolves to
- ``bf16`` on a CPU whose oneDNN really runs bf16 natively (AMX or AVX512-BF16, and ``ONEDNN_MAX_CPU_ISA`` not
  capping it), and on CUDA devices with native bf16;
- ``fp16`` (the Trainer adds loss scaling) on CUDA devices without bf16;
- ``fp32`` everywhere else. On a CPU without those instructions a bf16 matmul is emulated and runs an order of
  magnitude slower than fp32 (docs/BENCHMARKS.md), so bf16 there is never a default.

An explicit choice always wins; asking for bf16 on a CPU without native bf16 warns once, with the reason.
"""

from __future__ import annotations

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

    @property
    def torch_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain fp32."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    def autocast(self, device_type: str):
        """A context manager computing in this precision on ``device_type`` (a no-op for fp32)."""
        import contextlib

        if self.torch_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=self.torch_dtype)

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=None)
def cpu_bf16_native() -> tuple[bool, str]:
    """(native, why): whether bf16 matmuls on this CPU run on bf16 hardware, as oneDNN will use it now."""
    flags = _cpu_flags()
    found = [f for f in _BF16_FLAGS if f in flags]
    if not found:
        return False, "this CPU has no AMX or AVX512-BF16, so bf16 would be emulated and much slower than fp32"
    # A cap on oneDNN's ISA (e.g. AVX2, or AVX512_CORE on an AMX machine) turns bf16 into emulation. oneDNN's own check
    # catches caps below AVX-512 but passes AVX512_CORE(_VNNI), which have no bf16 instructions: read the cap too.
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    capped = bool(isa) and not any(word in isa for word in _ISA_WITH_BF16)
    if capped or (check is not None and not check()):
        return False, (f"oneDNN will not use the CPU's {'/'.join(found)}"
                       + (f" (ONEDNN_MAX_CPU_ISA={isa})" if isa else "") + ", so bf16 would be emulated")
    return True, f"the CPU has {'/'.join(found)}, where bf16 runs several times faster than fp32"


def _device_type(device) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def resolve_precision(requested: str = "auto", device=None) -> Precision:
    """The precision to compute in on ``device`` (default: CUDA if present, else CPU)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    kind = _device_type(device)
    if kind == "cpu":
        native, why = cpu_bf16_native()
        if requested == "auto":
            return Precision("bf16" if native else "fp32", why)
        if requested == "bf16" and not native:
            _warn_once(f"bf16 was asked for, but {why}; pass precision fp32 (or --fp32) for speed")
            return Precision("bf16", f"as asked; {why}")
        if requested == "fp16":
            raise ValueError("fp16 is for CUDA devices; on a CPU use bf16 (where native) or fp32")
        return Precision(requested, "as asked")
    if kind == "cuda":
        if requested != "auto":
            return Precision(requested, "as asked")
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Precision("bf16", "the GPU supports bf16 natively")
        return Precision("fp16", "the GPU has no native bf16; fp16 with loss scaling")
    return Precision("fp32" if requested == "auto" else requested, f"device {kind}" if requested == "auto" else "as asked")


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)
