"""Everything the pack needs from ComfyUI, each with a fallback for running without it.

This is the only module of the pack that imports ComfyUI (``folder_paths``,
``comfy.*``, ``comfy_api``). Every import is guarded, and every function works
without a host, so the nodes run in the tests, in scripts and on ComfyUI
versions that lack a newer feature:

=====================  ======================================  =====================================
what                   with ComfyUI                            without
=====================  ======================================  =====================================
model folders          ``folder_paths`` (+ ``charmotion``)      ``$CHARMOTION_MODELS_DIR`` or
                                                               ``<pack>/models``
output / temp folders  ``folder_paths`` (``--output-directory``) ``./output``, ``./temp``
progress bar           ``comfy.utils.ProgressBar`` (previews)   tqdm (quiet when not on a terminal)
cancel                 ``throw_exception_if_processing_..``     never
devices, dtypes        ``comfy.model_management``               CUDA if available, else CPU
model offloading       ``ModelPatcher`` + ``load_models_gpu``   plain ``.to(device)`` and back
VIDEO type             ``comfy_api`` (ComfyUI 0.3.30+)           unavailable (IMAGE output only)
=====================  ======================================  =====================================
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..dit_core import checks
from ..dit_core.errors import InvalidInputError

log = logging.getLogger("CharMotion")

PACK_DIR = Path(__file__).resolve().parents[1]
MODEL_EXTENSIONS = {".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt"}
#: The pack's own model folder (``models/charmotion``): other built-in model files.
PACK_FOLDER = "charmotion"

try:  # pragma: no cover - only inside ComfyUI
    import folder_paths  # type: ignore
except Exception:  # noqa: BLE001 - not running inside ComfyUI
    folder_paths = None

try:  # pragma: no cover - only inside ComfyUI
    import comfy.model_management as model_management  # type: ignore
except Exception:  # noqa: BLE001 - ImportError, or CUDA asserts outside ComfyUI's main.py
    model_management = None

try:  # pragma: no cover - only inside ComfyUI
    import comfy.utils as comfy_utils  # type: ignore
except Exception:  # noqa: BLE001
    comfy_utils = None

try:  # pragma: no cover - only inside ComfyUI
    import comfy.model_patcher as model_patcher  # type: ignore
except Exception:  # noqa: BLE001
    model_patcher = None

try:  # pragma: no cover - ComfyUI 0.3.30+
    from comfy_api.input_impl import VideoFromComponents  # type: ignore
    from comfy_api.util import VideoComponents  # type: ignore
except Exception:  # noqa: BLE001
    VideoFromComponents = VideoComponents = None


# ---------------------------------------------------------------------------
# Model folders


def fallback_models_dir() -> Path:
    return Path(os.environ.get("CHARMOTION_MODELS_DIR") or PACK_DIR / "models")


def register_model_folders() -> None:
    """Register ``models/charmotion`` with ComfyUI (core has no folder for the pack's own bundles)."""
    if folder_paths is None:
        return
    names = getattr(folder_paths, "folder_names_and_paths", None)
    if names is None:
        return
    default = os.path.join(folder_paths.models_dir, PACK_FOLDER)
    paths, extensions = names.get(PACK_FOLDER, ([], set()))
    paths = list(paths) + ([default] if default not in paths else [])
    # a name added by extra_model_paths.yaml has no extensions, which would list every file
    names[PACK_FOLDER] = (paths, set(extensions) or set(MODEL_EXTENSIONS))


def list_models(folder: str) -> list[str]:
    """Model files in a ComfyUI model folder (relative names, sorted); [] when there is none."""
    if folder_paths is not None:
        try:
            return list(folder_paths.get_filename_list(folder))
        except Exception:  # noqa: BLE001 - unknown folder on an older host
            return []
    root = fallback_models_dir() / folder
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS
    )


def model_folders(folder: str) -> list[str]:
    if folder_paths is not None:
        try:
            return list(folder_paths.get_folder_paths(folder))
        except Exception:  # noqa: BLE001
            return [os.path.join(folder_paths.models_dir, folder)]
    return [str(fallback_models_dir() / folder)]


def model_path(folders: tuple[str, ...] | str, name: str) -> str:
    """Full path of ``name`` from the first of ``folders`` that has it; a clear error if none does."""
    folders = (folders,) if isinstance(folders, str) else tuple(folders)
    checks.model_name(name, " or ".join(model_folders(f)[0] for f in folders))
    for folder in folders:
        if folder_paths is not None:
            try:
                path = folder_paths.get_full_path(folder, name)
            except Exception:  # noqa: BLE001
                path = None
            if path:
                return path
        else:
            path = fallback_models_dir() / folder / name
            if path.is_file():
                return str(path)
    where = " or ".join(model_folders(f)[0] for f in folders)
    raise InvalidInputError(f"model file {name!r} was not found: put it in {where} and refresh the page (press R)")


# ---------------------------------------------------------------------------
# Output folders and metadata


def output_directory() -> Path:
    if folder_paths is not None:
        return Path(folder_paths.get_output_directory())
    return Path(os.environ.get("CHARMOTION_OUTPUT_DIR") or "output").resolve()


def temp_directory() -> Path:
    if folder_paths is not None:
        return Path(folder_paths.get_temp_directory())
    return Path(os.environ.get("CHARMOTION_TEMP_DIR") or "temp").resolve()


def preview_of(path: Path, subfolder: str = "CharMotion/samples") -> dict:
    """The ``ui`` image entry that shows the file ``path`` under a node: a copy in the temp folder, which the
    editor can fetch (it serves only the input, output and temp folders)."""
    folder = temp_directory() / subfolder
    copy = folder / path.name
    data = path.read_bytes()
    if not copy.is_file() or copy.read_bytes() != data:
        folder.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(data)
    return {"filename": copy.name, "subfolder": subfolder, "type": "temp"}


def save_location(filename_prefix: str, width: int = 0, height: int = 0, temp: bool = False) -> tuple[Path, str, str]:
    """``(folder, file name prefix, subfolder)`` for a ``filename_prefix`` such as ``"charmotion/walk"``.

    With ComfyUI this is ``folder_paths.get_save_image_path`` (``%width%``,
    ``%date%``-style fields, refuses paths outside the output folder);
    without it, the same rules for sub-folders.
    """
    base = temp_directory() if temp else output_directory()
    if not str(filename_prefix).strip():
        raise InvalidInputError("filename prefix is empty: give a name, optionally inside sub-folders of the output "
                                "folder (e.g. 'charmotion/walk')")
    if folder_paths is not None:
        try:  # "a\b" is a sub-folder on every system, as the writers and the fallback below read it
            folder, name, _counter, subfolder, _prefix = folder_paths.get_save_image_path(
                str(filename_prefix).replace("\\", "/"), str(base), width, height
            )
        except Exception as exc:  # noqa: BLE001 - "**** ERROR: Saving image outside the output folder is not allowed."
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # then paths, for the log
            reason = first.lstrip("* ").removeprefix("ERROR:").strip()
            raise InvalidInputError(f"filename prefix {filename_prefix!r} cannot be used: {reason} Use a name, "
                                    "optionally inside sub-folders of the output folder (e.g. 'charmotion/walk').") from exc
        return Path(folder), name, subfolder
    text = str(filename_prefix).replace("\\", "/").replace("%width%", str(width)).replace("%height%", str(height))
    rel = Path(text)
    if not text.strip() or rel.is_absolute() or ".." in rel.parts or rel.name in ("", "."):
        raise InvalidInputError(
            f"filename prefix {filename_prefix!r} must be a name, optionally inside sub-folders of the output "
            "folder (e.g. 'charmotion/walk')"
        )
    folder = base / rel.parent
    checks.inside_folder(folder, base, f"filename prefix {filename_prefix!r}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot create the folder {folder} for filename prefix {filename_prefix!r} ({exc.strerror or exc}): "
            "make the output folder writable or choose another prefix"
        ) from None
    subfolder = "" if str(rel.parent) == "." else rel.parent.as_posix()
    return folder, rel.name, subfolder


def metadata_enabled() -> bool:
    """False when ComfyUI runs with ``--disable-metadata``."""
    try:
        from comfy.cli_args import args  # type: ignore
    except Exception:  # noqa: BLE001
        return True
    return not getattr(args, "disable_metadata", False)


def with_notes(outputs: tuple, notes) -> dict:
    """A node's ``outputs`` with its ``notes`` as ComfyUI's ``ui`` text (kept in the history too), which the
    pack's ``web/notes.js`` shows under the node; an empty list when there is nothing to say, so that the notes
    of an earlier run go away."""
    return {"ui": {"text": [str(n) for n in notes]}, "result": outputs}


# ---------------------------------------------------------------------------
# Progress and cancel


class Progress:
    """A progress bar: ComfyUI's (with optional previews) or tqdm."""

    def __init__(self, total: int, description: str = "CharMotion"):
        self.total = max(1, int(total))
        self._bar = None
        self._tqdm = None
        if comfy_utils is not None and hasattr(comfy_utils, "ProgressBar"):
            self._bar = comfy_utils.ProgressBar(self.total)
        else:
            try:
                from tqdm.auto import tqdm

                self._tqdm = tqdm(total=self.total, desc=description, disable=None, leave=False)
            except Exception:  # noqa: BLE001 - tqdm missing: no bar
                self._tqdm = None
        self.value = 0

    @property
    def wants_previews(self) -> bool:
        return self._bar is not None

    def update(self, value: int, preview: Any = None) -> None:
        """Set the bar to ``value``; ``preview`` is a PIL image shown in the node (ComfyUI only)."""
        value = min(int(value), self.total)
        if self._bar is not None:
            if preview is not None:
                self._bar.update_absolute(value, self.total, ("JPEG", preview, 512))
            else:
                self._bar.update_absolute(value, self.total)
        elif self._tqdm is not None:
            self._tqdm.update(value - self.value)
        self.value = value

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interrupt exception if the user cancelled the prompt (never without a host)."""
    if model_management is not None:
        model_management.throw_exception_if_processing_interrupted()


# ---------------------------------------------------------------------------
# Devices, dtypes, memory


def torch_device() -> torch.device:
    if model_management is not None:
        return model_management.get_torch_device()
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def offload_device() -> torch.device:
    if model_management is not None:
        return model_management.unet_offload_device()
    return torch.device("cpu")


def vae_device() -> torch.device:
    if model_management is not None:
        return model_management.vae_device()
    return torch_device()


def vae_offload_device() -> torch.device:
    if model_management is not None:
        return model_management.vae_offload_device()
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs (IMAGE, LATENT, CONDITIONING) live: the CPU unless ComfyUI says otherwise."""
    if model_management is not None:
        return model_management.intermediate_device()
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    if model_management is not None:
        try:
            return bool(model_management.should_use_bf16(device))
        except Exception:  # noqa: BLE001 - older signature
            pass
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def xformers_enabled() -> bool | None:
    """ComfyUI's own verdict on xformers (None without a host)."""
    if model_management is not None:
        try:
            return bool(model_management.xformers_enabled())
        except Exception:  # noqa: BLE001
            return None
    return None


def soft_empty_cache() -> None:
    if model_management is not None:
        model_management.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


class _Holder(torch.nn.Module):
    """What ComfyUI's model manager sees (it sets bookkeeping attributes on the module it is given)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.inner = module


class ManagedModule:
    """A module that ComfyUI moves to its device and offloads when memory is needed.

    Without ComfyUI's model manager the module is moved to ``load_device`` on
    :meth:`load` and back to ``offload_device`` on :meth:`offload`.
    """

    def __init__(self, module: torch.nn.Module, load_device: torch.device, offload_device: torch.device):
        self.module = module
        self.load_device = torch.device(load_device)
        self.offload_device = torch.device(offload_device)
        self.patcher = None
        if model_patcher is not None and model_management is not None:
            size = sum(t.numel() * t.element_size() for t in module.state_dict().values())
            try:
                self.patcher = model_patcher.ModelPatcher(_Holder(module), self.load_device, self.offload_device, size=size)
            except Exception as exc:  # noqa: BLE001 - keep working without offloading
                log.warning("CharMotion: ComfyUI model management unavailable (%s); moving the model by hand", exc)

    def load(self, memory_required: int = 0) -> None:
        if self.patcher is not None:
            try:
                model_management.load_models_gpu([self.patcher], memory_required=memory_required, force_full_load=True)
            except TypeError:  # ComfyUI before force_full_load
                model_management.load_models_gpu([self.patcher], memory_required=memory_required)
            return
        self.module.to(self.load_device)

    def offload(self) -> None:
        """Move back to the offload device (ComfyUI keeps loaded models until it needs the memory)."""
        if self.patcher is None and self.load_device != self.offload_device:
            self.module.to(self.offload_device)
            soft_empty_cache()


# ---------------------------------------------------------------------------
# VIDEO (ComfyUI 0.3.30+)


def video_available() -> bool:
    return VideoFromComponents is not None and VideoComponents is not None


def make_video(frames: torch.Tensor, fps: float):
    """A core VIDEO from IMAGE frames ``[F, H, W, 3]``."""
    if not video_available():
        raise InvalidInputError(
            "this ComfyUI has no VIDEO type (it came with ComfyUI 0.3.30): update ComfyUI, or use the IMAGE "
            "output of CharMotion VAE Decode with CharMotion Export"
        )
    return VideoFromComponents(VideoComponents(images=frames, frame_rate=Fraction(fps).limit_denominator(1000), audio=None))
