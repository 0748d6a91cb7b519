"""The one attention function every model in the pack calls.

Backends:

* ``sdpa`` (default): ``torch.nn.functional.scaled_dot_product_attention``.
* ``xformers``: ``xformers.ops.memory_efficient_attention`` on CUDA; variable
  length text uses its block-diagonal mask. Imported lazily, on first use.
* ``math``: the plain reference (scaled ``q @ k^T``, softmax in float32, ``@ v``),
  the way Open-Sora computes attention without fused kernels.
* ``auto``: ``xformers`` on CUDA when it is installed and works, else ``sdpa``.

Tensors use the ``[batch, tokens, heads, head_dim]`` layout (what a fused qkv
projection gives with a plain ``view``). For cross-attention to variable-length
text, keys/values are *packed* (``[1, sum(kv_lens), heads, head_dim]``) and
``kv_lens`` gives each batch element's number of text tokens: a list of ints, or a
:class:`KeyLengths` a model builds once per forward so that its padding mask and
scatter index are not rebuilt (and copied to the device) in every attention call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import PUBLIC_MODULE, CharMotionError

BACKENDS = ("auto", "sdpa", "xformers", "math")


class AttentionBackendError(CharMotionError, RuntimeError):
    """An attention backend was asked for but cannot run here; the message says what to do."""

    __module__ = PUBLIC_MODULE


@dataclass(frozen=True, eq=False)  # holds tensors: compared by identity
class KeyLengths:
    """Per-sample key counts of packed keys, with what unpacking them needs.

    ``mask`` ``[B, max(lens)]`` marks each row's real keys and ``index`` holds
    their flat positions in the padded ``[B * max(lens)]`` layout; both are None
    when every sample has the same count (packed keys then reshape as they are).
    """

    lens: tuple[int, ...]
    mask: torch.Tensor | None
    index: torch.Tensor | None

    @classmethod
    def build(cls, lens: Sequence[int], device: torch.device | str | None = None) -> "KeyLengths":
        lens = tuple(int(n) for n in lens)
        if not lens or min(lens) < 1:
            raise ValueError(f"every caption needs at least one valid token, got token counts {list(lens)} (a text "
                             "mask row is all zeros); encode a non-empty prompt")
        longest = max(lens)
        if all(n == longest for n in lens):
            return cls(lens, None, None)
        mask = torch.arange(longest)[None] < torch.tensor(lens)[:, None]
        index = mask.flatten().nonzero().squeeze(1)
        return cls(lens, mask.to(device), index.to(device))


@functools.lru_cache(maxsize=1)
def _xformers_ops():
    """Import xformers.ops once; return (module, None) or (None, reason)."""
    try:
        import xformers  # noqa: F401
        import xformers.ops as xops
    except Exception as exc:  # ImportError, or a binary built for another torch/CUDA
        return None, f"{type(exc).__name__}: {exc}"
    return xops, None


def _probe_query(device: str) -> torch.Tensor:
    """The tiny query ``[batch, tokens, heads, head_dim]`` of the xformers probe, half precision on ``device``."""
    return torch.zeros(1, 8, 2, 64, device=device, dtype=torch.float16)


@functools.lru_cache(maxsize=None)
def _xformers_cuda_problem(device: str) -> str | None:
    """Why xformers cannot run attention on this CUDA device (None when it can): an installed xformers built
    for another torch or CUDA imports fine but has no working kernels, so one tiny call is made to find out."""
    xops, reason = _xformers_ops()
    if xops is None:
        return reason
    try:
        q = _probe_query(device)
        xops.memory_efficient_attention(q, q, q)
    except Exception as exc:  # NotImplementedError: no operator built for this torch/CUDA
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return None


def xformers_available(device: torch.device | str | None = None) -> bool:
    """xformers imports (and, for a CUDA ``device``, really runs attention there)."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        return _xformers_cuda_problem(str(device)) is None
    return _xformers_ops()[0] is not None


def check_backend(name: str, device: torch.device | str | None = None) -> str:
    """Validate a backend name for a device and resolve ``auto``; raise an actionable error."""
    if name not in BACKENDS:
        raise AttentionBackendError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
    device = torch.device(device) if device is not None else None
    if name == "auto":
        if device is not None and device.type == "cuda" and xformers_available(device):
            return "xformers"
        return "sdpa"
    if name == "xformers":
        if device is not None and device.type != "cuda":
            raise AttentionBackendError(
                f"xformers attention needs a CUDA GPU, but the model runs on {device.type}. "
                "Choose attention 'sdpa' (or 'auto')."
            )
        xops, reason = _xformers_ops()
        if xops is None:
            raise AttentionBackendError(
                "attention 'xformers' was requested but xformers cannot be imported "
                f"({reason}). Install the xformers build that matches your torch and CUDA "
                "(pip install xformers --index-url https://download.pytorch.org/whl/cu<version>), "
                "or choose attention 'sdpa'/'auto'."
            )
        problem = _xformers_cuda_problem(str(device)) if device is not None and device.type == "cuda" else None
        if problem is not None:
            raise AttentionBackendError(
                "attention 'xformers' was requested but the installed xformers "
                f"cannot run on {device} ({problem}); it was most likely built for another torch or CUDA "
                f"(this is torch {torch.__version__}). Install the matching build "
                "(pip install xformers --index-url https://download.pytorch.org/whl/cu<version>), "
                "or choose attention 'sdpa'/'auto'."
            )
    return name


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    backend: str = "sdpa",
    kv_lens: Sequence[int] | KeyLengths | None = None,
) -> torch.Tensor:
    """Softmax attention with scale ``head_dim ** -0.5``.

    ``q``: ``[B, Lq, H, D]``. Without ``kv_lens``: ``k``/``v`` ``[B, Lk, H, D]``, every
    query attends to every key of its batch element. With ``kv_lens``: ``k``/``v``
    are packed ``[1, sum(kv_lens), H, D]`` and the queries of element ``i`` attend
    only to its own ``kv_lens[i]`` keys. Returns ``[B, Lq, H, D]``.
    """
    if backend == "auto":
        backend = check_backend("auto", q.device)
    if kv_lens is not None and not isinstance(kv_lens, KeyLengths):
        kv_lens = KeyLengths.build(kv_lens, q.device)
    if backend == "xformers":
        return _xformers_attention(q, k, v, kv_lens)

    if kv_lens is not None:
        k, v, key_mask = _unpack_keys(k, v, kv_lens)
    else:
        key_mask = None
    if backend == "math":
        return _math_attention(q, k, v, key_mask)
    if backend == "sdpa":
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask)
        return out.transpose(1, 2)
    raise AttentionBackendError(f"unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _unpack_keys(k: torch.Tensor, v: torch.Tensor, lengths: KeyLengths):
    """Packed ``[1, sum(L), H, D]`` keys -> padded ``[B, max(L), H, D]`` and the key mask (None if all equal)."""
    batch, longest = len(lengths.lens), max(lengths.lens)
    if lengths.mask is None:
        shape = (batch, longest) + tuple(k.shape[2:])
        return k.reshape(shape), v.reshape(shape), None
    rest = tuple(k.shape[2:])
    padded_k = k.new_zeros((batch * longest,) + rest).index_copy_(0, lengths.index, k[0])
    padded_v = v.new_zeros((batch * longest,) + rest).index_copy_(0, lengths.index, v[0])
    return padded_k.view((batch, longest) + rest), padded_v.view((batch, longest) + rest), lengths.mask


def _math_attention(q, k, v, key_mask):
    scale = q.shape[-1] ** -0.5
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, L, D]
    scores = (q * scale) @ k.transpose(-2, -1)
    scores = scores.float()
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    weights = scores.softmax(dim=-1).to(v.dtype)
    return (weights @ v).transpose(1, 2)


def _xformers_attention(q, k, v, kv_lens):
    xops, reason = _xformers_ops()
    if xops is None:
        check_backend("xformers", q.device)  # raises the actionable error
    if q.device.type != "cuda":
        check_backend("xformers", q.device)
    if kv_lens is None:
        return xops.memory_efficient_attention(q.contiguous(), k.contiguous(), v.contiguous())
    batch, lq = q.shape[0], q.shape[1]
    bias = xops.fmha.BlockDiagonalMask.from_seqlens([lq] * batch, list(kv_lens.lens))
    out = xops.memory_efficient_attention(
        q.reshape(1, batch * lq, *q.shape[2:]).contiguous(), k.contiguous(), v.contiguous(), attn_bias=bias
    )
    return out.reshape(q.shape)
