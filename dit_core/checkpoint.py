"""Reading weight files and loading them into modules built on the meta device.

Every model family (STDiT3, the Open-Sora video VAE, the built-in model)
loads through here, so they share one set of rules:

* ``.safetensors`` is read lazily (names and shapes first, tensors one at a
  time); ``.pt/.pth/.bin/.ckpt`` only through ``torch.load(weights_only=True)``.
* Common wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``) are
  stripped when every key carries them.
* The module is built on the ``meta`` device and each tensor is converted
  straight to the requested dtype/device before it is assigned, so a model
  never exists twice in memory (no full fp32 copy first).
* A strict key check names missing/unexpected keys and, where the file's key
  layout betrays another model family, says what the file is.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from .errors import PUBLIC_MODULE, CharMotionError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "ema.")
CONTAINER_KEYS = ("state_dict", "model", "module", "ema", "model_state_dict")


class CheckpointError(CharMotionError, ValueError):
    """A weights file that cannot be used as asked; the message says what to do."""

    __module__ = PUBLIC_MODULE


class WeightSource:
    """Lazy mapping of tensor names to tensors, from a file or a state dict."""

    def __init__(self, tensors: Mapping[str, torch.Tensor] | None = None, *, path: Path | None = None):
        self.path = path
        self._tensors = tensors
        self._safe = None
        self._prefix = ""
        self.metadata: dict = {}

    # -- construction -------------------------------------------------------
    @classmethod
    def open(cls, source: "str | os.PathLike | Mapping[str, torch.Tensor] | WeightSource") -> "WeightSource":
        if isinstance(source, WeightSource):
            return source
        if isinstance(source, Mapping):
            bad = [k for k, v in source.items() if not isinstance(v, torch.Tensor)]
            if bad:
                raise CheckpointError(f"state dict entries must be tensors; {bad[0]!r} is {type(source[bad[0]]).__name__}")
            ws = cls(dict(source))
        else:
            ws = cls._open_file(Path(source))
        ws._prefix = _common_wrapper_prefix(ws._raw_keys())
        return ws

    @classmethod
    def _open_file(cls, path: Path) -> "WeightSource":
        if not path.exists():
            raise CheckpointError(f"weights file not found: {path}")
        if path.is_dir():
            raise CheckpointError(f"{path} is a folder; pick the weights file inside it (e.g. model.safetensors)")
        suffix = path.suffix.lower()
        if suffix in SAFETENSORS_SUFFIXES:
            from safetensors import safe_open

            try:
                handle = safe_open(str(path), framework="pt", device="cpu")
            except Exception as exc:  # SafetensorError is not importable as a class everywhere
                raise CheckpointError(
                    f"{path.name} is not a readable safetensors file ({exc}). The file is probably truncated or "
                    "damaged (an interrupted download?): download it again and compare its size with the source."
                ) from exc
            ws = cls(path=path)
            ws._safe = handle
            ws.metadata = dict(handle.metadata() or {})
            return ws
        if suffix in PICKLE_SUFFIXES:
            return cls(_load_pickled_state_dict(path), path=path)
        raise CheckpointError(
            f"{path.name}: unsupported weights format {suffix!r}; use a .safetensors file "
            "(or .pt/.pth/.bin/.ckpt holding a plain state dict)"
        )

    # -- access ---------------------------------------------------------------
    def _raw_keys(self) -> list[str]:
        if self._safe is not None:
            return list(self._safe.keys())
        return list(self._tensors.keys())

    def keys(self) -> list[str]:
        n = len(self._prefix)
        return [k[n:] for k in self._raw_keys()]

    def __contains__(self, key: str) -> bool:
        return (self._prefix + key) in set(self._raw_keys())

    def shape(self, key: str) -> tuple[int, ...]:
        raw = self._prefix + key
        if self._safe is not None:
            return tuple(self._safe.get_slice(raw).get_shape())
        return tuple(self._tensors[raw].shape)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k) for k in self.keys()}

    def tensor(self, key: str) -> torch.Tensor:
        raw = self._prefix + key
        if self._safe is not None:
            try:
                return self._safe.get_tensor(raw)
            except Exception as exc:
                raise CheckpointError(
                    f"could not read tensor {key!r} from {self.name}: {exc}. The file is probably damaged; "
                    "download it again."
                ) from exc
        return self._tensors[raw]

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "the state dict"

    def sidecar_config(self) -> dict:
        """A JSON config stored beside the file (``<stem>.json`` or ``config.json``) or in its metadata."""
        if "config" in self.metadata:
            try:
                return json.loads(self.metadata["config"])
            except json.JSONDecodeError:
                pass
        if self.path is None:
            return {}
        for candidate in (self.path.with_suffix(".json"), self.path.parent / "config.json"):
            if candidate.is_file():
                try:
                    return json.loads(candidate.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
        return {}


def _load_pickled_state_dict(path: Path) -> dict:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        # legacy (non-zip) torch files cannot be memory-mapped
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise _pickle_error(path, exc) from exc
    except Exception as exc:
        raise _pickle_error(path, exc) from exc
    for _ in range(3):
        if isinstance(obj, Mapping) and not _all_tensors(obj):
            inner = next((obj[k] for k in CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _all_tensors(obj):
        raise CheckpointError(f"{path.name} does not hold a plain state dict of tensors; save it as .safetensors")
    return dict(obj)


def _pickle_error(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"could not load {path.name} safely ({exc}). Only plain tensor state dicts are read from pickle files "
        "(torch.load with weights_only=True); convert the file to .safetensors, or download it again if it is "
        "truncated."
    )


def _all_tensors(mapping: Mapping) -> bool:
    return bool(mapping) and all(isinstance(v, torch.Tensor) for v in mapping.values())


def _common_wrapper_prefix(keys: Iterable[str]) -> str:
    keys = list(keys)
    prefix = ""
    changed = True
    while changed and keys:
        changed = False
        for p in WRAPPER_PREFIXES:
            if all(k.startswith(prefix + p) for k in keys):
                prefix += p
                changed = True
                break
    return prefix


# ---------------------------------------------------------------------------
# Model-family detection (for helpful errors and for loaders that accept several)

FAMILIES: dict[str, str] = {
    "stdit3": "an Open-Sora 1.2 STDiT3 denoiser",
    "stdit3_part": "one shard of a split Open-Sora 1.2 STDiT3 file (it holds only some of the model's parts)",
    "opensora_vae_v1_2": "an Open-Sora VAE v1.2 video VAE",
    "image_vae": "a plain image VAE (SD/SDXL style, no temporal part)",
    "t5": "a T5 text encoder",
    "image_unet": "a Stable Diffusion UNet / checkpoint",
    "stdit_v1": "an Open-Sora 1.0/1.1 STDiT (not compatible with Open-Sora 1.2)",
    "pixart": "a PixArt image transformer",
    "charmotion_builtin": "a CharMotion built-in (motion-field) model file",
    "charmotion_tiny": "a model file of the earlier CharMotion tiny model (pixel space), which this version no longer "
                       "runs",
    "unknown": "an unrecognised model",
}


#: The top-level parts every STDiT3 file holds, besides its spatial and temporal blocks.
STDIT3_PARTS = ("x_embedder.", "t_embedder.", "t_block.", "y_embedder.", "final_layer.")


def detect_family(keys: Iterable[str]) -> str:
    keys = set(keys)

    def has(fragment: str) -> bool:
        """A key holds ``fragment`` from its start or from the start of one of its dotted parts."""
        return any(k.startswith(fragment) or "." + fragment in k for k in keys)

    if any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("dit.") for k in keys):
        return "charmotion_builtin"
    if any(k.startswith("tiny_text.") for k in keys):
        return "charmotion_tiny"
    if has("spatial_blocks.") or has("temporal_blocks."):
        return "stdit3" if _whole_stdit3(keys) else "stdit3_part"
    if has("temporal_vae.") and has("spatial_vae."):
        return "opensora_vae_v1_2"
    if has("encoder.block.0.layer.0.SelfAttention") or has("shared.weight") and has("encoder.final_layer_norm"):
        return "t5"
    if has("model.diffusion_model.") or has("down_blocks.0.attentions.0") or has("input_blocks.0.0.weight"):
        return "image_unet"
    if (has("encoder.down_blocks.0.resnets.0") or has("encoder.down.0.block.0")) and has("decoder."):
        return "image_vae"
    if has("attn_temp.") or has("blocks.0.attn_temp"):
        return "stdit_v1"
    if has("blocks.0.attn.qkv.weight") and has("y_embedder."):
        return "pixart"
    return "unknown"


def _whole_stdit3(keys: set[str]) -> bool:
    """Every part of an STDiT3: the top-level parts, and spatial and temporal blocks numbered alike from 0 up."""
    blocks = {kind: {int(k.split(".")[1]) for k in keys if k.startswith(kind) and k.split(".")[1].isdigit()}
              for kind in ("spatial_blocks.", "temporal_blocks.")}
    spatial, temporal = blocks.values()
    return (all(any(k.startswith(part) for k in keys) for part in STDIT3_PARTS) and spatial == temporal
            and spatial == set(range(len(spatial))) and len(spatial) > 0)


def describe_family(family: str) -> str:
    return FAMILIES.get(family, FAMILIES["unknown"])


# ---------------------------------------------------------------------------
# Loading into a meta-device module

def _summarise(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def load_weights(
    module: nn.Module,
    source: WeightSource,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    expected_family: str,
    what: str,
    prefix: str = "",
    optional: Mapping[str, Callable[[], torch.Tensor]] | None = None,
    ignore: Callable[[str], bool] | None = None,
    keep_dtype: Callable[[str], bool] | None = None,
) -> nn.Module:
    """Fill ``module`` (built on the meta device) with the tensors of ``source``.

    ``prefix`` selects keys under it (e.g. ``"temporal_vae."``); ``optional``
    maps keys that may be absent from the file to a factory for their value;
    ``ignore`` drops harmless extra keys; ``keep_dtype`` keeps a key's own
    floating dtype (e.g. fp32 buffers). ``what`` names the model in messages.
    """
    optional = dict(optional or {})
    device = torch.device(device)
    expected = {k: tuple(v.shape) for k, v in module.state_dict(keep_vars=True).items()}
    available = [k[len(prefix):] for k in source.keys() if k.startswith(prefix)]
    available_set = set(available)

    missing = [k for k in expected if k not in available_set and k not in optional]
    unexpected = [k for k in available if k not in expected and not (ignore and ignore(k))]
    if missing or unexpected:
        family = detect_family(source.keys())
        lines = [f"{source.name} does not match {what}."]
        if family != expected_family:
            lines.append(f"It looks like {describe_family(family)}, not {describe_family(expected_family)}.")
        if missing:
            lines.append(f"Missing keys: {_summarise(missing)}.")
        if unexpected:
            lines.append(f"Unexpected keys: {_summarise(unexpected)}.")
        lines.append(
            "Pick the right file for this loader (see the README for which file goes where), "
            "or download it again if it is incomplete."
        )
        raise CheckpointError(" ".join(lines))

    mismatched = [
        (k, expected[k], source.shape(prefix + k)) for k in expected if k in available_set and source.shape(prefix + k) != expected[k]
    ]
    if mismatched:
        k, want, got = mismatched[0]
        raise CheckpointError(
            f"{source.name} does not match {what}: {k} has shape {list(got)} in the file but the model expects "
            f"{list(want)} ({len(mismatched)} tensor(s) differ). The file is a different model size than its "
            "config says; remove a wrong sidecar config or pick the matching file."
        )

    state = {}
    broken = []
    for key in expected:
        if key in available_set:
            tensor = source.tensor(prefix + key)
        else:
            tensor = optional[key]()
        if tensor.is_floating_point() and not (keep_dtype and keep_dtype(key)):
            tensor = tensor.to(device=device, dtype=dtype)
        else:
            tensor = tensor.to(device=device)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            broken.append(key)
        state[key] = tensor
    if broken:
        overflow = " or load it in fp32/bf16 (fp16 cannot hold its values)" if dtype == torch.float16 else ""
        raise CheckpointError(
            f"{source.name} holds NaN or infinite values in {len(broken)} tensor(s) of {what} "
            f"({_summarise(broken, 3)}): the file is damaged; download it again{overflow}."
        )
    module.load_state_dict(state, strict=True, assign=True)
    return module


@contextmanager
def reading_model_file(source, what: str):
    """Errors from a file's broken metadata or a missing entry -> a :class:`CheckpointError` naming the file.

    ``what`` names the kind of file expected (e.g. "a CharMotion built-in model file").
    """
    name = "the built-in model file" if source is None else Path(os.fspath(source)).name
    try:
        yield
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{name} has damaged metadata (not valid JSON: {exc}): it is not usable as {what}; "
            "export or download it again"
        ) from None
    except KeyError as exc:
        raise CheckpointError(
            f"{name} lacks {exc} that {what} needs: the file is incomplete or another kind of model; "
            "export or download it again, or pick the right file"
        ) from None
