"""T5 v1.1 XXL text encoding as Open-Sora 1.2 does it, for use outside ComfyUI.

Inside ComfyUI the T5 comes from the core CLIPLoader; the command line uses
the Hugging Face ``transformers`` implementation when it is installed (it is
not a dependency of the pack). Prompts are tokenised to exactly 300 tokens
(padded, truncated, EOS appended), encoded in float32 with the attention
mask, and returned with the valid-token mask.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import InvalidInputError
from .sampling import TextCondition

MAX_LENGTH = 300


class T5TextEncoder:
    def __init__(self, tokenizer, model, device):
        self.tokenizer, self.model, self.device = tokenizer, model, torch.device(device)

    @classmethod
    def from_pretrained(cls, folder: str, device="cpu") -> "T5TextEncoder":
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError:
            raise InvalidInputError(
                "encoding prompts with T5 outside ComfyUI needs the transformers package: "
                "pip install transformers sentencepiece (inside ComfyUI, use CLIPLoader with type pixart instead)"
            ) from None
        if not Path(folder).is_dir():
            raise InvalidInputError(f"--t5 must be a folder with the T5 v1.1 XXL files (config.json, weights, tokenizer): {folder}")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = T5EncoderModel.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
        return cls(tokenizer, model.to(device).eval(), device)

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> TextCondition:
        tokens = self.tokenizer(prompts, max_length=MAX_LENGTH, padding="max_length", truncation=True,
                                add_special_tokens=True, return_tensors="pt")
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask)["last_hidden_state"]
        return TextCondition(hidden[:, None].float(), mask.long())
