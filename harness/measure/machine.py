"""The machine a figure was measured on: CPU model, cores, ISA extensions, runtime and harness versions."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class MachineFingerprint:
    cpu_model: str
    cpu_count: int
    cpu_isa: str  # the widest vector / int8 extensions: int8 speed depends on them
    ort_version: str
    harness_version: str

    @property
    def has_vnni(self) -> bool:
        return "vnni" in self.cpu_isa


def machine_fingerprint(ort_version: str) -> MachineFingerprint:
    from harness import __version__

    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "", platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return MachineFingerprint(model, os.cpu_count() or 0, "+".join(isa) or "none", ort_version, __version__)
