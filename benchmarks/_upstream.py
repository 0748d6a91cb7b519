"""Open-Sora v1.2.0's own STDiT3, RFLOW sampler and video VAE, loaded from its source tree for side-by-side runs.

``load(path)`` takes a folder holding upstream's ``opensora/`` package (an export of tag v1.2.0; nothing of it
is part of this repository) and executes only the module files a generation needs:
``models/layers/blocks.py``, ``models/stdit/stdit3.py``, ``models/vae/{utils,vae_temporal,vae}.py``,
``schedulers/rf/`` (with the ``iddpm`` helpers it imports) and ``registry.py``. The package ``__init__`` files,
which import training, data loading, distributed and text-encoder code, are not run: empty package modules stand
in for them. The helpers those files import from elsewhere are replaced by the small stand-ins below:

* ``mmengine.registry.Registry``: registers and builds by name (no lazy imports of ``locations``);
* ``opensora.acceleration.*``: the sequence-parallel helpers are identities (sequence parallelism is never on)
  and ``auto_grad_checkpoint`` calls the module;
* ``opensora.utils.ckpt_utils``: loading a checkpoint is refused (the benchmark builds random weights);
* ``transformers.PretrainedConfig`` / ``PreTrainedModel``: an attribute bag and an ``nn.Module`` holding
  ``config`` (they carry no computation in these models, and transformers 5 renamed the config class);
* ``diffusers.AutoencoderKL.from_pretrained`` as upstream's ``VideoAutoencoderKL`` calls it: builds the real
  diffusers ``AutoencoderKL`` from a config (random weights) instead of downloading one;
* ``xformers`` (when the real one cannot run, e.g. on a CPU): ``memory_efficient_attention`` with a
  ``BlockDiagonalMask`` computed block by block with PyTorch's SDPA;
* ``timm`` (only where the real one cannot be imported, e.g. a CPU-only torch beside a CUDA torchvision):
  ``Mlp`` (fc1 -> activation -> fc2, as timm's with no norm layer and no dropout) and ``DropPath``;
* ``flash_attn`` (not installable without building it): ``flash_attn_func`` computed by PyTorch's SDPA, held to
  its FlashAttention-2 kernel on CUDA in half precision.

The real third-party packages upstream's files use: torch, einops, timm (``Mlp``, ``DropPath``),
rotary_embedding_torch (the temporal RoPE), diffusers (``AutoencoderKL``, the 2-D VAE) and tqdm.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: the hub id upstream's OpenSoraVAE_V1_2 builds its 2-D VAE from, and that VAE's (SDXL) architecture
PIXART_SDXL_VAE = "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers"
SDXL_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, act_fn="silu", norm_num_groups=32,
    sample_size=1024, scaling_factor=0.13025,
)
#: upstream's latent normalisation (OpenSoraVAE_V1_2)
SHIFT = (-0.10, 0.34, 0.27, 0.98)
SCALE = (3.85, 2.32, 2.33, 3.06)

PACKAGES = ("opensora", "opensora.models", "opensora.models.layers", "opensora.models.stdit", "opensora.models.vae",
            "opensora.schedulers", "opensora.schedulers.iddpm", "opensora.utils", "opensora.acceleration")


class UpstreamMissing(FileNotFoundError):
    pass


# -- stand-ins -------------------------------------------------------------------------------------------------

class Registry:
    """mmengine's Registry as upstream uses it: ``register_module`` (a decorator) and ``build(cfg)``."""

    def __init__(self, name: str, locations=None, **_):
        self.name, self.modules = name, {}

    def register_module(self, name=None, force=False, module=None):
        def add(obj):
            self.modules[name or obj.__name__] = obj
            return obj

        return add(module) if module is not None else add

    def get(self, name):
        return self.modules[name]

    def build(self, cfg: dict, **_):
        cfg = dict(cfg)
        kind = cfg.pop("type")
        if kind not in self.modules:
            raise KeyError(f"{kind!r} is not registered in the {self.name} registry here (known: {sorted(self.modules)})")
        return self.modules[kind](**cfg)


class PretrainedConfig:
    """transformers' config base as upstream's configs use it: keyword arguments become attributes."""

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)


class PreTrainedModel(nn.Module):
    """transformers' model base as upstream's models use it: an ``nn.Module`` holding ``config``."""

    config_class = PretrainedConfig

    def __init__(self, config, *args, **kwargs):
        super().__init__()
        self.config = config


class Mlp(nn.Module):
    """timm's ``Mlp`` as upstream builds it (no norm, no dropout at inference): fc1 -> act -> fc2."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0, **_):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features or in_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features or in_features, out_features or in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Identity):
    """timm's ``DropPath``: the identity at inference."""

    def __init__(self, drop_prob=0.0, **_):
        super().__init__()


def _identity(x, *args, **kwargs):
    return x


def _call(module, *args, **kwargs):
    return module(*args, **kwargs)


def _no_checkpoints(*args, **kwargs):
    raise RuntimeError("loading upstream checkpoints is not part of this benchmark (it builds random weights)")


class BlockDiagonalMask:
    """xformers' ``fmha.BlockDiagonalMask`` as upstream builds it: query block i attends to key block i only."""

    def __init__(self, q_seqlen, kv_seqlen):
        self.q_seqlen = [int(n) for n in q_seqlen]
        self.kv_seqlen = [int(n) for n in kv_seqlen]

    @classmethod
    def from_seqlens(cls, q_seqlen, kv_seqlen=None):
        return cls(q_seqlen, q_seqlen if kv_seqlen is None else kv_seqlen)


def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None, **_):
    """``[B, M, H, D]`` attention: plain for no bias, per block for a :class:`BlockDiagonalMask` (batch 1)."""
    if p:
        raise ValueError("attention dropout is not supported here")

    def sdpa(q, k, v):
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale=scale)
        return out.transpose(1, 2)

    if attn_bias is None:
        return sdpa(query, key, value)
    if not isinstance(attn_bias, BlockDiagonalMask) or query.shape[0] != 1:
        raise TypeError("only a BlockDiagonalMask over a batch of 1 is supported here")
    out = torch.empty_like(query)
    q0 = k0 = 0
    for nq, nk in zip(attn_bias.q_seqlen, attn_bias.kv_seqlen):
        out[:, q0:q0 + nq] = sdpa(query[:, q0:q0 + nq], key[:, k0:k0 + nk], value[:, k0:k0 + nk])
        q0, k0 = q0 + nq, k0 + nk
    return out


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **_):
    """flash-attn 2's ``flash_attn_func`` (``[B, N, H, D]``) by PyTorch's SDPA, its flash kernel on CUDA."""
    if dropout_p:
        raise ValueError("attention dropout is not supported here")
    args = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    out = None
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        try:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                out = F.scaled_dot_product_attention(*args, scale=softmax_scale, is_causal=causal)
        except RuntimeError:  # no flash kernel for this shape or GPU: let SDPA choose
            out = None
    if out is None:
        out = F.scaled_dot_product_attention(*args, scale=softmax_scale, is_causal=causal)
    return out.transpose(1, 2).contiguous()


class AutoencoderKLFromConfig:
    """What upstream's ``VideoAutoencoderKL`` calls as ``AutoencoderKL.from_pretrained``: the real diffusers
    ``AutoencoderKL`` built from a config dict (or, for upstream's own hub id, the SDXL VAE's config)."""

    @staticmethod
    def from_pretrained(source, **_):
        from diffusers.models import AutoencoderKL

        if isinstance(source, dict):
            return AutoencoderKL(**source)
        if source == PIXART_SDXL_VAE:
            return AutoencoderKL(**SDXL_VAE_CONFIG)
        raise ValueError(f"no config known for {source!r}; pass the AutoencoderKL config as a dict")


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


# -- loading ---------------------------------------------------------------------------------------------------

@dataclass
class Upstream:
    root: Path
    stdit3: types.ModuleType  # opensora.models.stdit.stdit3
    rflow: types.ModuleType  # opensora.schedulers.rf (RFLOW)
    rectified_flow: types.ModuleType  # opensora.schedulers.rf.rectified_flow (timestep_transform)
    vae: types.ModuleType  # opensora.models.vae.vae
    timm: str  # real timm, or the stand-in
    xformers: str  # what upstream's cross-attention runs on
    flash_attn: str  # what its flash-attention path runs on
    source: str  # the tag/commit the tree says it is

    def build_stdit3(self, *, device="cpu", flash_attn=True, **sizes) -> nn.Module:
        """Upstream's STDiT3 with its own initialisation (seed first). ``sizes``: depth, hidden_size, num_heads,
        patch_size, caption_channels, model_max_length. Flash attention as in upstream's inference config; apex's
        fused LayerNorm off (plain nn.LayerNorm)."""
        config = self.stdit3.STDiT3Config(qk_norm=True, enable_flash_attn=flash_attn, enable_layernorm_kernel=False,
                                          **sizes)
        with torch.device(device):
            return self.stdit3.STDiT3(config)

    def build_vae(self, *, device="cpu", spatial: dict | None = None, temporal: dict | None = None,
                  micro_batch_size: int = 4, micro_frame_size: int = 17) -> nn.Module:
        """Upstream's VideoAutoencoderPipeline: the published architecture through its own ``OpenSoraVAE_V1_2``
        (no ``spatial``/``temporal``), or a smaller one: ``spatial`` = diffusers AutoencoderKL config,
        ``temporal`` = VAE_Temporal arguments."""
        with torch.device(device):
            if spatial is None and temporal is None:
                return self.vae.OpenSoraVAE_V1_2(micro_batch_size=micro_batch_size, micro_frame_size=micro_frame_size)
            config = self.vae.VideoAutoencoderPipelineConfig(
                vae_2d=dict(type="VideoAutoencoderKL", from_pretrained=dict(spatial or SDXL_VAE_CONFIG),
                            micro_batch_size=micro_batch_size),
                vae_temporal=dict(type="VAE_Temporal", **(temporal or {})) if temporal else dict(type="VAE_Temporal_SD"),
                micro_frame_size=micro_frame_size, shift=SHIFT, scale=SCALE,
            )
            return self.vae.VideoAutoencoderPipeline(config)

    def rflow_sampler(self, steps: int, cfg_scale: float):
        """Upstream's RFLOW as its v1.2 inference config sets it up (timestep transform on)."""
        return self.rflow.RFLOW(num_sampling_steps=steps, num_timesteps=1000, cfg_scale=cfg_scale,
                                use_timestep_transform=True)


_LOADED: Upstream | None = None


def _real_xformers_works() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import xformers.ops as xops

        q = torch.randn(1, 8, 2, 64, device="cuda", dtype=torch.float16)
        xops.memory_efficient_attention(q, q, q, attn_bias=xops.fmha.BlockDiagonalMask.from_seqlens([4, 4], [3, 5]))
        return True
    except Exception:
        return False


def load(path, *, xformers: str = "auto", flash: str = "standin") -> Upstream:
    """Import upstream's model and sampler files from ``path`` (a folder holding ``opensora/``).

    ``xformers``: ``real`` (the installed package), ``standin`` (SDPA per block) or ``auto`` (real where it runs
    attention on this machine's GPU). ``flash``: ``real`` (the flash_attn package) or ``standin``.
    """
    global _LOADED
    if _LOADED is not None:
        return _LOADED
    root = Path(path).expanduser().resolve()
    package = root / "opensora"
    needed = ["models/stdit/stdit3.py", "models/layers/blocks.py", "models/vae/vae.py", "schedulers/rf/__init__.py"]
    missing = [n for n in needed if not (package / n).is_file()]
    if missing:
        raise UpstreamMissing(
            f"{root} does not hold Open-Sora v1.2.0's source (missing opensora/{missing[0]}). Export it from a clone "
            "of hpcaitech/Open-Sora: git archive v1.2.0 opensora | tar -x -C <folder>, and pass that folder."
        )
    if xformers == "auto":
        xformers = "real" if _real_xformers_works() else "standin"

    # real third-party packages first, so that nothing of theirs sees a stand-in
    import einops  # noqa: F401
    import rotary_embedding_torch  # noqa: F401
    import tqdm  # noqa: F401
    from diffusers.models import AutoencoderKL  # noqa: F401

    temporary = {}
    try:
        import timm
        import timm.models.layers  # noqa: F401
        import timm.models.vision_transformer  # noqa: F401

        timm_desc = f"timm {timm.__version__}"
    except Exception as exc:  # timm needs a working torchvision
        layers = _module("timm.models.layers", DropPath=DropPath)
        vit = _module("timm.models.vision_transformer", Mlp=Mlp)
        models = _module("timm.models", layers=layers, vision_transformer=vit)
        temporary.update({"timm": _module("timm", models=models), "timm.models": models, "timm.models.layers": layers,
                          "timm.models.vision_transformer": vit})
        timm_desc = f"stand-in Mlp/DropPath (timm does not import here: {type(exc).__name__}: {exc})"
    temporary.update({
        "mmengine": _module("mmengine"),
        "mmengine.registry": _module("mmengine.registry", Registry=Registry),
        "transformers": _module("transformers", PretrainedConfig=PretrainedConfig, PreTrainedModel=PreTrainedModel),
    })
    if xformers == "standin":
        fmha = _module("xformers.ops.fmha", BlockDiagonalMask=BlockDiagonalMask)
        ops = _module("xformers.ops", fmha=fmha, memory_efficient_attention=memory_efficient_attention)
        temporary.update({"xformers": _module("xformers", ops=ops, __version__="stand-in"), "xformers.ops": ops,
                          "xformers.ops.fmha": fmha})
    # flash_attn is imported inside Attention.forward, so its stand-in stays; nothing of the pack imports it
    if flash == "standin":
        sys.modules["flash_attn"] = _module("flash_attn", flash_attn_func=flash_attn_func)
    for name in PACKAGES:
        parts = name.split(".")
        sys.modules[name] = _module(name, __path__=[str(root.joinpath(*parts))], __package__=name)
    sys.modules["opensora.acceleration.checkpoint"] = _module(
        "opensora.acceleration.checkpoint", auto_grad_checkpoint=_call)
    sys.modules["opensora.acceleration.communications"] = _module(
        "opensora.acceleration.communications", all_to_all=_identity, split_forward_gather_backward=_identity,
        gather_forward_split_backward=_identity)
    sys.modules["opensora.acceleration.parallel_states"] = _module(
        "opensora.acceleration.parallel_states", get_sequence_parallel_group=lambda: None,
        get_data_parallel_group=lambda: None)
    sys.modules["opensora.utils.ckpt_utils"] = _module(
        "opensora.utils.ckpt_utils", load_checkpoint=_no_checkpoints, find_model=_no_checkpoints)

    saved = {name: sys.modules.get(name) for name in temporary}
    sys.modules.update(temporary)
    try:
        stdit3 = importlib.import_module("opensora.models.stdit.stdit3")
        vae = importlib.import_module("opensora.models.vae.vae")
        importlib.import_module("opensora.models.vae.vae_temporal")  # registers VAE_Temporal(_SD)
        rflow = importlib.import_module("opensora.schedulers.rf")
        rectified_flow = importlib.import_module("opensora.schedulers.rf.rectified_flow")
    finally:
        for name, module in saved.items():  # upstream's modules keep their references; nothing else sees these
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    vae.AutoencoderKL = AutoencoderKLFromConfig

    if xformers == "real":
        import xformers as xf

        xf_desc = f"xformers {xf.__version__}"
    else:
        xf_desc = "stand-in: per-block torch SDPA"
    if flash == "standin":
        flash_desc = "stand-in: torch SDPA (FlashAttention-2 kernel on CUDA)"
    else:
        import flash_attn

        flash_desc = f"flash_attn {flash_attn.__version__}"
    marker = root / "UPSTREAM.txt"
    source = marker.read_text().splitlines()[0] if marker.is_file() else "Open-Sora source tree (version not recorded)"
    _LOADED = Upstream(root, stdit3, rflow, rectified_flow, vae, timm_desc, xf_desc, flash_desc, source)
    return _LOADED


__all__ = ["PIXART_SDXL_VAE", "SDXL_VAE_CONFIG", "SCALE", "SHIFT", "Upstream", "UpstreamMissing", "load"]
