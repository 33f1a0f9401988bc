"""What the server process needs to know, as one JSON document (standard library only: the server imports it first)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ServerConfig:
    """One variant served under one target's session options."""

    onnx_path: str
    input_hw: tuple[int, int]
    num_classes: int
    threads: int
    cpu_affinity: tuple[int, ...]  # empty: leave the process's CPUs as they are
    inter_op_threads: int = 1
    enable_cpu_mem_arena: bool = True
    enable_mem_pattern: bool = True
    allow_spinning: bool = True
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (the bench's choice; the port is sent on the ready pipe)
    model: str = ""  # names for /health
    variant: str = ""
    max_body_mb: float = 20.0
    handler_delay_ms: float = 0.0  # tests only: a slower "model", to show queueing under open-loop load

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServerConfig":
        data = json.loads(text)
        data["input_hw"] = tuple(data["input_hw"])
        data["cpu_affinity"] = tuple(data["cpu_affinity"])
        return cls(**data)
