"""What the server process needs to know, as one JSON document (standard library only: the server imports it first)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ServerConfig:
    """One variant served under one target's session options."""

    onnx_path: str
    input_hw: tuple[int, int]
    num_classes: int
    threads: int
    cpu_affinity: tuple[int, ...]  # empty: leave the process's CPUs as they are
    inter_op_threads: int = 1
    backend_options: dict = field(default_factory=dict)  # ONNX Runtime's session options, as a Request carries them
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (the bench's choice; the port is sent on the ready pipe)
    model: str = ""  # names for /health
    variant: str = ""
    max_body_mb: float = 20.0
    max_bodies_mb: float = 64.0  # request bodies held at once, all connections together; past it a request gets 503
    memory_mb: float = 0.0  # the service's memory (the target's cap), what the largest image is derived from; 0: free RAM
    header_timeout_s: float = 10.0  # from a request's first byte to the end of its head; then 408 and closed
    body_timeout_s: float = 60.0  # from the head to the body's last byte (20 MB at 0.33 MB/s); then 408
    keep_alive_s: float = 15.0  # a connection with no request in progress and no byte sent is closed after this
    handler_delay_ms: float = 0.0  # tests only: a slower "model", to show queueing under open-loop load

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServerConfig":
        data = json.loads(text)
        data["input_hw"] = tuple(data["input_hw"])
        data["cpu_affinity"] = tuple(data["cpu_affinity"])
        return cls(**data)
