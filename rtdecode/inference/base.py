"""The one interface every classifier backend implements.

A backend takes a preallocated float32 input of the bundle's static shape (1, 3, S, S) and
returns the two logits (artificial, natural). It is created once, warmed up before the daemon
reports ready, and reports what it really runs on (``device``), e.g. the ONNX Runtime providers
actually granted, not those requested.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from rtdecode.errors import RtdecodeError


class BackendUnavailable(RtdecodeError, RuntimeError):
    """The requested backend cannot run here (missing package, no GPU); the message says why."""


@runtime_checkable
class Backend(Protocol):
    name: str
    input_shape: tuple[int, ...]

    @property
    def device(self) -> str: ...

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits (batch, 2) for input ``x`` of shape ``input_shape`` (float32, C-contiguous)."""
        ...

    def warmup(self, n: int = 5) -> None: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class WarmupMixin:
    input_shape: tuple[int, ...]

    def warmup(self, n: int = 5) -> None:
        x = np.zeros(self.input_shape, dtype=np.float32)
        for _ in range(n):
            self.infer(x)
