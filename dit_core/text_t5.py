"""T5 v1.1 XXL text encoding as Open-Sora 1.2 does it, for use outside ComfyUI.

Inside ComfyUI the T5 comes from the core CLIPLoader; the command line uses
the Hugging Face ``transformers`` implementation when it is installed (it is
not a dependency of the pack). Prompts are tokenised to exactly 300 tokens
(padded, truncated, EOS appended), encoded in float32 with the attention
mask, and returned with the valid-token mask.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import InvalidInputError
from .sampling import TextCondition

MAX_LENGTH = 300
XXL_WIDTH = 4096  # the channels of T5 v1.1 XXL's features, which Open-Sora 1.2 reads
TOKENIZER_FILES = ("spiece.model", "tokenizer.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
FOLDER_HOLDS = ("a T5 v1.1 XXL folder in Hugging Face layout (e.g. DeepFloyd/t5-v1_1-xxl) holds config.json, the "
                "tokenizer (spiece.model or tokenizer.json) and the weights (model.safetensors or pytorch_model.bin, or "
                "their shards with the .index.json that lists them)")


def check_t5_folder(folder: "str | Path") -> None:
    """Refuse a ``--t5`` folder without the T5 files, missing a shard its index lists, or with a damaged
    safetensors file (read from its header, before transformers is asked to load anything)."""
    from .checkpoint import CheckpointError, WeightSource

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"--t5 must be a folder with the T5 v1.1 XXL files (config.json, weights, tokenizer): {folder}")
    names = {p.name for p in folder.iterdir()}
    lacks = [what for what, files in (("config.json", ("config.json",)), ("tokenizer", TOKENIZER_FILES),
                                      ("weights", WEIGHT_FILES)) if not names.intersection(files)]
    if lacks:
        what = "no T5 files" if len(lacks) == 3 else "no T5 " + " and no ".join(lacks)
        raise InvalidInputError(f"--t5 {folder} has {what}: {FOLDER_HOLDS}")
    weights = [next(name for name in WEIGHT_FILES if name in names)]  # the one transformers reads, as it picks
    if weights[0].endswith(".index.json"):
        index = weights.pop()
        try:
            weights = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"--t5 {folder}: {index} is damaged ({type(exc).__name__}: {exc}); download it "
                                    "again") from None
    absent = [name for name in weights if not (folder / name).is_file()]
    if absent:
        raise InvalidInputError(f"--t5 {folder} lacks {', '.join(absent)}, which its index lists: download the "
                                "missing files")
    for name in weights:
        if name.endswith(".safetensors"):
            try:
                WeightSource.open(folder / name)
            except CheckpointError as exc:
                raise CheckpointError(f"--t5 {folder}: {exc}") from None


class T5TextEncoder:
    def __init__(self, tokenizer, model, device, folder: str = "the T5"):
        self.tokenizer, self.model, self.device = tokenizer, model, torch.device(device)
        self.folder = folder

    @classmethod
    def from_pretrained(cls, folder: str, device="cpu", channels: int | None = None) -> "T5TextEncoder":
        """The T5 in ``folder``; with ``channels`` (the denoiser's caption width) a T5 of another width is refused
        from its config.json, before its weights are read."""
        check_t5_folder(folder)
        if channels is not None:
            _check_width(folder, _config_width(folder), channels)
        try:
            from transformers import AutoTokenizer, T5EncoderModel

            if not (Path(folder) / "tokenizer.json").is_file():
                import sentencepiece  # noqa: F401 - T5's own tokenizer file (spiece.model) needs it
        except ImportError:
            raise InvalidInputError(
                "encoding prompts with T5 outside ComfyUI needs the transformers package: "
                "pip install transformers sentencepiece (inside ComfyUI, use CLIPLoader with type pixart instead)"
            ) from None
        with _loading(folder, "tokenizer"):
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        with _loading(folder, "weights"):
            model = T5EncoderModel.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
        return cls(tokenizer, model.to(device).eval(), device, folder=str(folder))

    @property
    def width(self) -> int:
        """The channels of the features it gives (4096 for T5 v1.1 XXL)."""
        return int(self.model.config.d_model)

    def check_width(self, channels: int) -> None:
        """Refuse a T5 whose features are not as wide as the denoiser's captions (another T5 size)."""
        _check_width(self.folder, self.width, channels)

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> TextCondition:
        tokens = self.tokenizer(prompts, max_length=MAX_LENGTH, padding="max_length", truncation=True,
                                add_special_tokens=True, return_tensors="pt")
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask)["last_hidden_state"]
        return TextCondition(hidden[:, None].float(), mask.long())


def _config_width(folder) -> int | None:
    """``d_model`` of the folder's config.json (None when it does not say)."""
    try:
        return int(json.loads((Path(folder) / "config.json").read_text())["d_model"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_width(folder, width: int | None, channels: int) -> None:
    if width is not None and width != int(channels):
        fix = f"use T5 v1.1 XXL ({XXL_WIDTH})" if int(channels) == XXL_WIDTH else \
            f"use the T5 the model was trained with ({channels} channels)"
        raise InvalidInputError(f"--t5 {folder}: this T5 gives {width}-channel features but the model reads "
                                f"{channels}: {fix}")


@contextmanager
def _loading(folder, part: str):
    """What transformers raises while reading a ``--t5`` folder (a damaged or mismatched file) -> one
    :class:`InvalidInputError` naming the folder; running out of memory stays what it is."""
    try:
        yield
    except (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError)):
        raise
    except Exception as exc:
        said = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        raise InvalidInputError(f"--t5 {folder}: could not load the T5 {part} ({said[0]}); a file in the folder is "
                                "damaged or of another model: download the T5 v1.1 XXL folder again") from exc
