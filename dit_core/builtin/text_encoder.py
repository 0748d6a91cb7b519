"""The built-in model's text encoder: hashed character n-grams plus a small transformer.

No vocabulary file and nothing to download: every word is the sum of the
embeddings of its hashed character 3-grams and 4-grams (and the whole word),
so unseen spellings ("hopping" after "hops") still land near known ones.
Numbers (``motion score: 5.0.``) are embedded by value. The output has the
same form as T5's for Open-Sora: token features ``[n, 1, L, dim]`` and a
valid-token mask ``[n, L]``, with an end-of-text token like T5's EOS.

With ``prompt_features`` on, two whole-prompt features are added to every
token (so they reach the denoiser's pooled caption undiluted): the actions
the prompt's words name, looked up in the model file's table of action
words (:mod:`.vocabulary`; a word counts once for each action it names), and
the motion score by value. A small model learns its actions from these far
sooner than from the words alone.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from ..sampling import TextCondition
from .vocabulary import WORD, stem, stem_table

TOKEN_PATTERN = re.compile(r"\d+(?:\.\d+)?|[a-z]+|[^\sa-z\d]")
NUMBER_PATTERN = re.compile(r"\d+(?:\.\d+)?")
MOTION_PATTERN = re.compile(r"motion score\s*:\s*(\d+(?:\.\d+)?)")


@dataclass
class TextEncoderConfig:
    dim: int = 64
    buckets: int = 4096
    max_length: int = 32
    layers: int = 2
    heads: int = 4
    number_features: int = 16
    prompt_features: bool = False  # add the named actions and the motion score to every token


def word_ngrams(word: str) -> list[str]:
    marked = f"<{word}>"
    grams = {marked}
    for n in (3, 4):
        grams.update(marked[i : i + n] for i in range(len(marked) - n + 1))
    return sorted(grams)


def stable_bucket(text: str, buckets: int) -> int:
    return zlib.crc32(text.encode("utf-8")) % (buckets - 1) + 1  # bucket 0 is padding


@lru_cache(maxsize=65536)
def word_buckets(word: str, buckets: int) -> tuple[int, ...]:
    """The embedding rows of a word's n-grams (cached: captions repeat the same few hundred words)."""
    return tuple(stable_bucket(g, buckets) for g in word_ngrams(word))


class TinyTextEncoder(nn.Module):
    EOS = "</s>"

    def __init__(self, config: TextEncoderConfig | None = None, action_words: dict[str, list[str]] | None = None):
        super().__init__()
        self.config = config = config or TextEncoderConfig()
        self.action_names = list(action_words or {})
        self.action_table = stem_table(action_words or {})
        if config.prompt_features:
            if not self.action_names:
                raise ValueError("a text encoder with prompt features needs the table of action words")
            self.action = nn.Linear(len(self.action_names), config.dim, bias=False)
            self.motion = nn.Linear(config.number_features, config.dim)
            nn.init.normal_(self.action.weight, std=1.0)  # as loud as a layer-normed token from the start
        self.ngrams = nn.EmbeddingBag(config.buckets, config.dim, mode="sum", padding_idx=0)
        self.number = nn.Linear(config.number_features, config.dim)
        self.position = nn.Parameter(torch.randn(config.max_length, config.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, dim_feedforward=4 * config.dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    def tokenize(self, text: str) -> list[str]:
        tokens = TOKEN_PATTERN.findall(text.lower())[: self.config.max_length - 1]
        return tokens + [self.EOS]

    def _number_features(self, value: float) -> torch.Tensor:
        half = self.config.number_features // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(100.0) / max(half - 1, 1)))
        angles = value * freqs
        return torch.cat([torch.sin(angles), torch.cos(angles)])

    def forward(self, texts: list[str]) -> TextCondition:
        device = self.position.device
        token_lists = [self.tokenize(t) for t in texts]
        length = max(len(t) for t in token_lists)
        ids, offsets, numbers, number_slots = [], [], [], []
        for i, tokens in enumerate(token_lists):
            for j in range(length):
                offsets.append(len(ids))
                if j >= len(tokens):
                    ids.append(0)
                    continue
                token = tokens[j]
                ids.extend(word_buckets(token, self.config.buckets))
                if NUMBER_PATTERN.fullmatch(token):
                    numbers.append(self._number_features(float(token)))
                    number_slots.append(i * length + j)
        words = self.ngrams(torch.tensor(ids, device=device), torch.tensor(offsets, device=device))
        if numbers:
            values = self.number(torch.stack(numbers).to(device))
            extra = torch.zeros(words.shape, dtype=values.dtype, device=device)
            extra[torch.tensor(number_slots, device=device)] = values
            words = words + extra
        words = words.view(len(texts), length, -1) + self.position[:length]
        mask = torch.tensor([[1] * len(t) + [0] * (length - len(t)) for t in token_lists], device=device)
        hidden = self.norm(self.encoder(words, src_key_padding_mask=mask == 0))
        if self.config.prompt_features:
            hidden = hidden + self.prompt_features(texts).to(hidden.dtype)[:, None]
        return TextCondition(hidden[:, None], mask)

    def action_counts(self, text: str) -> torch.Tensor:
        """How many of the prompt's words name each action ``[len(action_names)]``."""
        counts = torch.zeros(len(self.action_names))
        for word in WORD.findall(text.lower()):
            for name in self.action_table.get(stem(word), ()):
                counts[self.action_names.index(name)] += 1
        return counts

    def prompt_features(self, texts: list[str]) -> torch.Tensor:
        """``[n, dim]``: the named actions (counts, normalised to sum 1) plus the motion score, when given."""
        device = self.position.device
        counts = torch.stack([self.action_counts(t) for t in texts])
        actions = counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)
        features = self.action(actions.to(device))
        for i, text in enumerate(texts):
            if found := MOTION_PATTERN.search(text.lower()):
                features[i] = features[i] + self.motion(self._number_features(float(found.group(1))).to(device))
        return features

