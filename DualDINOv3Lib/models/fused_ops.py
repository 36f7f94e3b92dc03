"""Linear layers with their bias and GELU fused into one oneDNN call on CPU, for inference (issue 12).

``F.linear`` on CPU first copies the bias into the output and then accumulates the product onto it, and a GELU
after it is one more full pass over the (large) hidden activations. oneDNN's inner product applies both in the
product's epilogue, while the output tile is still in cache: in bf16 on an AMX CPU the MLP's ``fc1 + GELU`` of a
ViT-B block takes half the time. PyTorch exposes that kernel as ``torch.ops.mkldnn._linear_pointwise`` (what
``torch.compile`` itself emits for CPU). It is private, so it is probed once and every call falls back to the
plain ``F.linear`` (+ ``F.gelu``) where it is missing or does not apply: on other devices, with gradients, or when
the weight is not already in the compute dtype (autocast would have cast it). Same numbers to float rounding
(``Testing/models/test_fused_ops.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

_FUSED_DTYPES = (torch.float32, torch.bfloat16)
_FUSED_ENABLED = contextvars.ContextVar("dualdinov3_fused_ops", default=True)


@contextlib.contextmanager
def plain_ops() -> Iterator[None]:
    """Within the block, the plain PyTorch ops the models used before issue 12 (unfused linear + GELU, the
    original RoPE formula): the reference of the parity tests and of ``bench_paper.py``'s speed comparison."""
    token = _FUSED_ENABLED.set(False)
    try:
        yield
    finally:
        _FUSED_ENABLED.reset(token)


def fused_ops_enabled() -> bool:
    return _FUSED_ENABLED.get()


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast computes matrix products in on ``x``'s device, or ``x``'s own dtype without autocast."""
    kind = x.device.type
    try:
        if torch.is_autocast_enabled(kind):
            return torch.get_autocast_dtype(kind)
    except (TypeError, AttributeError, RuntimeError):  # torch < 2.4 takes no device type; no autocast there
        pass
    return x.dtype


@functools.cache
def onednn_linear_available() -> bool:
    """Whether this PyTorch has oneDNN's fused CPU linear and it computes a tiny product correctly."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w, b = torch.ones(2, 4), torch.ones(3, 4), torch.ones(3)
        with torch.inference_mode():
            out = op(x, w, b, "none", [], "")
        return torch.equal(out, torch.full((2, 3), 5.0))
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _fusable(x: Tensor, weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> bool:
    if not _FUSED_ENABLED.get():
        return False
    if x.device.type != "cpu" or dtype not in _FUSED_DTYPES or weight.dtype != dtype or x.dim() < 2:
        return False
    if bias is not None and bias.dtype != dtype:
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return False
    return onednn_linear_available()


def linear_gelu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.gelu(F.linear(x, weight, bias))`` with the exact (erf) GELU.

    One oneDNN call on CPU when nothing needs gradients and ``weight`` (and ``bias``) already have the compute
    dtype (float32, or bf16 under autocast with the weights cast once, see ``inference.segment.matmul_weights_in``);
    otherwise exactly the plain PyTorch ops, autocast included. Products without GELU stay ``F.linear``: measured
    no faster through oneDNN's call.
    """
    dtype = compute_dtype(x)
    if _fusable(x, weight, bias, dtype):
        rows = x.to(dtype).reshape(-1, x.shape[-1])  # oneDNN's 2D path is the faster one
        out = torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "gelu", [], "none")
        return out.view(*x.shape[:-1], weight.shape[0])
    return F.gelu(F.linear(x, weight, bias))
