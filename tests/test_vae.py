"""Open-Sora VAE v1.2: golden parity, key layout, loader errors, chunking, tiling, low precision."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from golden_data import case_weights_path, golden_cases, golden_dir, load_case_tensors
from safetensors.torch import load_file

from charmotion.dit_core.checkpoint import CheckpointError, WeightSource
from charmotion.dit_core.vae import (
    OpenSoraVAE,
    SpatialTiling,
    VideoVAEConfig,
    infer_config,
    load_opensora_vae,
)
from charmotion.dit_core.vae.pipeline import DECODE_WORKSPACE_BYTES
from charmotion.dit_core.vae.tiling import blend_ramp, tile_starts, tiled_apply

VAE_CASES = golden_cases("vae_pipeline")
# Measured on the golden weights (CPU): worst bf16 error 0.030 (encode) / 0.069 (decode),
# worst fp16 error 0.0045 / 0.0092, for outputs of magnitude up to ~3.8. Bounds keep ~2x margin.
LOW_PRECISION_TOL = {
    torch.bfloat16: {"encode": 0.06, "decode": 0.15},
    torch.float16: {"encode": 0.01, "decode": 0.02},
}

_models: dict = {}


def golden_vae(case: dict, dtype: torch.dtype = torch.float32, **kwargs) -> OpenSoraVAE:
    key = (case["weights"], json.dumps(case, sort_keys=True), dtype, tuple(sorted(kwargs.items())))
    if key not in _models:
        _models[key] = load_opensora_vae(case_weights_path(case), config=case, dtype=dtype, **kwargs)
    return _models[key]


def first_case() -> dict:
    if not VAE_CASES:
        pytest.skip("no vae_pipeline cases in the golden manifest")
    return VAE_CASES[0].values[0]


def golden_state_dict(case: dict) -> dict:
    return load_file(str(case_weights_path(case)))


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


# ---------------------------------------------------------------------------
# golden parity


@pytest.mark.parametrize("case", VAE_CASES)
def test_golden_parity(case):
    tensors = load_case_tensors(case)
    vae = golden_vae(case)
    assert vae.latent_frames(case["num_frames"]) == tensors["z"].shape[2]
    z = vae.encode(tensors["x"])
    decoded = vae.decode(tensors["z"], case["num_frames"])
    assert z.shape == tensors["z"].shape and decoded.shape == tensors["decoded"].shape
    enc, dec = max_err(z, tensors["z"]), max_err(decoded, tensors["decoded"])
    assert max(enc, dec) <= case["tolerance"], f"worst error: encode {enc:.3g}, decode {dec:.3g} (tol {case['tolerance']})"


@pytest.mark.parametrize("case", VAE_CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_close_to_fp32(case, dtype):
    tensors = load_case_tensors(case)
    vae = golden_vae(case, dtype)
    assert vae.dtype == dtype and vae.scale.dtype == torch.float32
    z = vae.encode(tensors["x"])
    decoded = vae.decode(tensors["z"], case["num_frames"])
    assert z.dtype == torch.float32 and decoded.dtype == torch.float32  # results follow the input's dtype
    assert torch.isfinite(decoded).all() and vae.fp32_fallbacks == 0
    enc, dec = max_err(z, tensors["z"]), max_err(decoded, tensors["decoded"])
    tol = LOW_PRECISION_TOL[dtype]
    assert enc <= tol["encode"] and dec <= tol["decode"], f"{dtype}: encode {enc:.3g}, decode {dec:.3g} vs fp32 golden"


def test_fp16_overflow_recomputed_in_fp32():
    case = first_case()
    tensors = load_case_tensors(case)
    state = golden_state_dict(case)
    # Huge activations after the 2-D decoder's first conv: fine in fp32 (GroupNorm rescales), inf in fp16.
    for k in ("spatial_vae.module.decoder.conv_in.weight", "spatial_vae.module.decoder.conv_in.bias"):
        state[k] = state[k] * 3e4
    ref = load_opensora_vae(state, config=case).decode(tensors["z"], case["num_frames"])
    half = load_opensora_vae(state, config=case, dtype=torch.float16)
    raw = half.spatial_vae.module.decode(tensors["z"][:, :, 0].half() * 3)
    assert not torch.isfinite(raw).all(), "the test weights should overflow in plain fp16"
    decoded = half.decode(tensors["z"], case["num_frames"])
    assert torch.isfinite(decoded).all()
    assert half.fp32_fallbacks == 1
    assert max_err(decoded, ref) <= LOW_PRECISION_TOL[torch.float16]["decode"]


# ---------------------------------------------------------------------------
# frame counts and sizes


def test_frame_and_size_mapping():
    with torch.device("meta"):
        vae = OpenSoraVAE()
    expected = {1: 1, 4: 1, 5: 2, 11: 3, 16: 4, 17: 5, 18: 6, 22: 7, 34: 10, 51: 15, 102: 30, 204: 60, 408: 120}
    assert {f: vae.latent_frames(f) for f in expected} == expected
    assert vae.latent_channels == 4 and vae.spatial_factor == 8 and vae.micro_latent_size == 5
    assert vae.latent_size(240, 426) == (30, 53)


def test_the_vae_is_a_video_codec_with_17_frame_chunks():
    from charmotion.dit_core.codecs import VideoCodec

    with torch.device("meta"):
        vae = OpenSoraVAE()
    assert isinstance(vae, VideoCodec)
    assert vae.layout.frames_per_chunk == 17 and vae.layout.temporal_factor == 4
    assert all(vae.layout.latent_frames(f) == vae.latent_frames(f) for f in (1, 17, 34, 51, 102))
    assert vae.latent_size(720, 1280) == (90, 160)
    assert vae.latent_frames(np.int64(51)) == 15
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_frames"):
            vae.latent_frames(bad)


def test_decode_rejects_wrong_frame_count_and_shapes():
    case = first_case()
    tensors = load_case_tensors(case)
    vae = golden_vae(case)
    wrong = case["num_frames"] + vae.micro_frame_size
    with pytest.raises(ValueError, match="latent frames"):
        vae.decode(tensors["z"], wrong)
    with pytest.raises(ValueError, match="unsqueeze"):
        vae.encode(tensors["x"][:, :, 0])
    with pytest.raises(ValueError, match="colour channels"):
        vae.encode(tensors["x"][:, :2])
    with pytest.raises(ValueError, match="latents"):
        vae.decode(tensors["z"][:, :3], case["num_frames"])


# ---------------------------------------------------------------------------
# published key layout and config inference


def published_shapes() -> dict:
    return json.loads((golden_dir() / "opensora12_keys.json").read_text())["OpenSoraVAE_V1_2"]


def test_published_key_layout_matches_meta_model():
    with torch.device("meta"):
        vae = OpenSoraVAE()
    ours = {k: list(v.shape) for k, v in vae.state_dict().items()}
    published = published_shapes()
    assert sorted(set(ours) - set(published)) == [] and sorted(set(published) - set(ours)) == []
    wrong = {k: (ours[k], published[k]) for k in published if ours[k] != published[k]}
    assert not wrong, f"{len(wrong)} shapes differ, e.g. {next(iter(wrong.items()))}"


def test_config_inferred_from_published_shapes():
    meta = {k: torch.empty(shape, device="meta") for k, shape in published_shapes().items()}
    cfg, settings = infer_config(WeightSource.open(meta))
    assert cfg == VideoVAEConfig() and settings == {}
    assert cfg.spatial.block_out_channels == (128, 256, 512, 512) and cfg.spatial.layers_per_block == 2
    assert cfg.temporal.channel_multipliers == (1, 2, 2, 4) and cfg.temporal.num_res_blocks == 4
    assert cfg.temporal.temporal_downsample == (False, True, True) and cfg.temporal.time_factor == 4


@pytest.mark.parametrize("case", VAE_CASES)
def test_config_inferred_from_golden_weights(case):
    cfg = golden_vae(case).config
    sc, tc = case["spatial_config"], case["temporal_config"]
    assert list(cfg.spatial.block_out_channels) == sc["block_out_channels"]
    assert cfg.spatial.layers_per_block == sc["layers_per_block"]
    assert cfg.spatial.latent_channels == sc["latent_channels"]
    for name in ("filters", "num_res_blocks", "in_out_channels", "latent_embed_dim", "embed_dim", "num_groups"):
        assert getattr(cfg.temporal, name) == tc[name], name
    assert list(cfg.temporal.channel_multipliers) == tc["channel_multipliers"]
    assert list(cfg.temporal.temporal_downsample) == tc["temporal_downsample"]
    assert list(cfg.shift) == pytest.approx(case["shift"]) and list(cfg.scale) == pytest.approx(case["scale"])


# ---------------------------------------------------------------------------
# loader errors and config sources


def test_plain_image_vae_is_rejected_with_what_it_is():
    case = first_case()
    prefix = "spatial_vae.module."
    sdxl_style = {k[len(prefix):]: v for k, v in golden_state_dict(case).items() if k.startswith(prefix)}
    with pytest.raises(CheckpointError, match="plain image VAE") as err:
        load_opensora_vae(sdxl_style, config=case)
    assert "OpenSora-VAE-v1.2" in str(err.value) and "temporal" in str(err.value)

    ldm_style = {
        "encoder.conv_in.weight": torch.zeros(8, 3, 3, 3),
        "encoder.down.0.block.0.conv1.weight": torch.zeros(8, 8, 3, 3),
        "decoder.up.0.block.0.conv1.weight": torch.zeros(8, 8, 3, 3),
        "quant_conv.weight": torch.zeros(8, 8, 1, 1),
    }
    with pytest.raises(CheckpointError, match="plain image VAE"):
        load_opensora_vae(ldm_style)


def test_other_family_file_is_rejected():
    stdit = golden_dir() / "stdit3_weights.safetensors"
    if not stdit.exists():
        pytest.skip("no STDiT3 golden weights")
    with pytest.raises(CheckpointError, match="STDiT3 denoiser"):
        load_opensora_vae(stdit)


def test_truncated_file(tmp_path):
    case = first_case()
    data = case_weights_path(case).read_bytes()
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_opensora_vae(broken, config=case)


def test_config_disagreeing_with_shapes():
    case = first_case()
    bad = json.loads(json.dumps(case))
    bad["temporal_config"]["filters"] = 2 * case["temporal_config"]["filters"]
    want, have = bad["temporal_config"]["filters"], case["temporal_config"]["filters"]
    with pytest.raises(CheckpointError, match=f"filters is {want} in the config but {have} in the weights"):
        load_opensora_vae(case_weights_path(case), config=bad)


def test_tensor_shape_mismatch_names_the_tensor():
    case = first_case()
    state = golden_state_dict(case)
    key = "temporal_vae.decoder.res_blocks.0.conv1.conv.weight"
    state[key] = state[key][:, :, :1].contiguous()
    with pytest.raises(CheckpointError, match="res_blocks.0.conv1.conv.weight has shape") as err:
        load_opensora_vae(state, config=case)
    assert str(list(state[key].shape)) in str(err.value)


def test_group_count_needs_config():
    case = first_case()
    if case["spatial_config"]["norm_num_groups"] == 32:
        pytest.skip("case uses the default group count")
    with pytest.raises(CheckpointError, match="config.json"):
        load_opensora_vae(case_weights_path(case))


def test_sidecar_config_json(tmp_path):
    case = first_case()
    tensors = load_case_tensors(case)
    shutil.copy(case_weights_path(case), tmp_path / "model.safetensors")
    hf_style = {
        "model_type": "VideoAutoencoderPipeline",
        "vae_2d": {"type": "VideoAutoencoderKL", "micro_batch_size": 2,
                   "norm_num_groups": case["spatial_config"]["norm_num_groups"]},
        "vae_temporal": {"type": "VAE_Temporal_SD", "num_groups": case["temporal_config"]["num_groups"]},
        "micro_frame_size": case["micro_frame_size"],
    }
    (tmp_path / "config.json").write_text(json.dumps(hf_style))
    vae = load_opensora_vae(tmp_path / "model.safetensors")
    assert vae.micro_batch_size == 2
    assert max_err(vae.decode(tensors["z"], case["num_frames"]), tensors["decoded"]) <= case["tolerance"]

    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "norm_num_groups": 8}))
    if case["spatial_config"]["norm_num_groups"] != 32:
        with pytest.raises(CheckpointError, match="norm"):
            load_opensora_vae(tmp_path / "model.safetensors")  # an unrelated config.json is not used


def test_missing_scale_shift_use_constants():
    case = first_case()
    tensors = load_case_tensors(case)
    state = golden_state_dict(case)
    del state["scale"], state["shift"]
    vae = load_opensora_vae(state, config=case)
    assert vae.scale.flatten().tolist() == pytest.approx(case["scale"])
    assert max_err(vae.decode(tensors["z"], case["num_frames"]), tensors["decoded"]) <= case["tolerance"]


def test_loads_straight_into_dtype():
    case = first_case()
    vae = golden_vae(case, torch.bfloat16)
    dtypes = {p.dtype for p in vae.parameters()}
    assert dtypes == {torch.bfloat16}
    assert not any(p.device.type == "meta" for p in vae.state_dict().values())


# ---------------------------------------------------------------------------
# chunking, streaming, sampling


def multi_chunk_case() -> dict:
    cases = [c.values[0] for c in VAE_CASES if c.values[0]["num_frames"] > c.values[0]["micro_frame_size"]]
    if not cases:
        pytest.skip("no golden case spans several chunks")
    return cases[0]


def test_chunks_are_independent_and_micro_batch_invariant():
    case = multi_chunk_case()
    tensors = load_case_tensors(case)
    x, mfs = tensors["x"], case["micro_frame_size"]
    vae = golden_vae(case)
    z = vae.encode(x)
    head = vae.encode(x[:, :, :mfs])
    tail = vae.encode(x[:, :, mfs:])
    assert max_err(torch.cat([head, tail], dim=2), z) <= 1e-5
    for mbs in (1, 64):
        other = golden_vae(case, micro_batch_size=mbs)
        assert max_err(other.encode(x), z) <= 1e-5
        assert max_err(other.decode(tensors["z"], case["num_frames"]), tensors["decoded"]) <= case["tolerance"]


def test_iter_decode_and_progress_callback():
    case = multi_chunk_case()
    tensors = load_case_tensors(case)
    vae = golden_vae(case)
    f, mfs = case["num_frames"], case["micro_frame_size"]
    pieces = list(vae.iter_decode(tensors["z"], f))
    expected_sizes = [mfs] * (f // mfs) + ([f % mfs] if f % mfs else [])
    assert [p.shape[2] for p in pieces] == expected_sizes
    assert max_err(torch.cat(pieces, dim=2), tensors["decoded"]) <= case["tolerance"]

    calls = []
    vae.decode(tensors["z"], f, callback=lambda done, total: calls.append((done, total)))
    n = len(expected_sizes)
    assert calls == [(i + 1, n) for i in range(n)]

    class Cancelled(Exception):
        pass

    seen = []

    def cancel(done, total):
        seen.append(done)
        raise Cancelled

    with pytest.raises(Cancelled):
        vae.decode(tensors["z"], f, callback=cancel)
    assert seen == [1]


def test_sampling_uses_the_generator():
    case = first_case()
    x = load_case_tensors(case)["x"]
    vae = golden_vae(case)
    mean = vae.encode(x)
    a = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
    b = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
    c = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert max_err(a, mean) > 1e-3 and max_err(a, c) > 1e-3
    assert torch.equal(vae.encode(x, generator=torch.Generator().manual_seed(1)), mean)


def test_results_follow_input_dtype_and_device():
    case = first_case()
    tensors = load_case_tensors(case)
    vae = golden_vae(case)
    z = vae.encode(tensors["x"].double())
    assert z.dtype == torch.float64 and max_err(z, tensors["z"]) <= case["tolerance"]
    out = vae.decode(tensors["z"].to(torch.bfloat16), case["num_frames"], out_device="cpu")
    assert out.dtype == torch.bfloat16


# ---------------------------------------------------------------------------
# spatial tiling


@pytest.mark.parametrize("length,tile,overlap", [(7, 8, 2), (8, 8, 2), (9, 8, 2), (32, 16, 4), (48, 16, 6), (53, 16, 4), (160, 64, 16)])
def test_tile_layout_covers_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and min(starts[-1] + tile, length) == length
    for a, b in zip(starts, starts[1:]):
        assert a + tile - b >= overlap
    w = blend_ramp(tile, overlap, head=True, tail=True)
    assert (w > 0).all() and w.max() == 1.0


@pytest.mark.parametrize("hw", [(20, 28), (33, 17), (64, 40)])
def test_tile_blending_is_exact_for_local_operations(hw):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *hw, generator=gen)
    weight = torch.randn(5, 3, 1, 1, generator=gen)

    def up(t):  # pointwise conv + nearest x4: each output pixel depends on one input pixel
        return F.interpolate(F.conv2d(t, weight), scale_factor=4, mode="nearest")

    tiled = tiled_apply(up, x, grid=hw, tile=8, overlap=2, in_scale=1, out_scale=4)
    assert max_err(tiled, up(x)) <= 1e-5

    def down(t):  # 4x4 average pooling; floor of the size like the VAE encoder
        return F.avg_pool2d(t, 4)

    img = torch.randn(1, 3, hw[0] * 4 + 3, hw[1] * 4 + 1, generator=gen)
    tiled = tiled_apply(down, img, grid=hw, tile=8, overlap=2, in_scale=4, out_scale=1)
    assert max_err(tiled, down(img)) <= 1e-5


def test_tiling_off_or_single_tile_is_exact():
    case = first_case()
    tensors = load_case_tensors(case)
    f = case["num_frames"]
    plain = golden_vae(case)
    big = golden_vae(case, tile=SpatialTiling(tile=4096, overlap=64))
    assert torch.equal(big.decode(tensors["z"], f), plain.decode(tensors["z"], f))
    assert torch.equal(big.encode(tensors["x"]), plain.encode(tensors["x"]))


def test_tiled_decode_and_encode_close_to_untiled():
    """Tiles see their own GroupNorm statistics and attention context, so results differ a little.

    On content that is statistically the same everywhere (a repeating pattern), what is left is the
    error at tile borders, which the blending must hide. Measured on the golden weights
    (factor-2 VAE, 32×48 latents, 32 px tiles with 12 px overlap): decode mean error 0.028 for a
    signal std of 0.56 (max 0.27), encode mean 0.014 for a std of 0.19 (max 0.21). The same tiles
    without overlap give max errors of 1.96 / 0.70, which these bounds reject.
    """
    case = first_case()
    gen = torch.Generator().manual_seed(0)
    plain = golden_vae(case)
    tiled = golden_vae(case, tile=SpatialTiling(tile=32, overlap=12))
    f = plain.spatial_factor
    z = torch.randn(1, 4, 2, 8, 8, generator=gen).repeat(1, 1, 1, 4, 6)
    ref = plain.decode(z, 5)
    out = tiled.decode(z, 5)
    err = (out - ref).abs()
    assert err.mean() <= 0.06 and err.max() <= 0.6, f"decode: mean {err.mean():.3g}, max {err.max():.3g}"

    period = 8 * f
    x = (torch.rand(1, 3, 5, period, period, generator=gen) * 2 - 1).repeat(1, 1, 1, 4, 6)
    zref = plain.encode(x)
    zt = tiled.encode(x)
    err = (zt - zref).abs()
    assert err.mean() <= 0.03 and err.max() <= 0.45, f"encode: mean {err.mean():.3g}, max {err.max():.3g}"


# ---------------------------------------------------------------------------
# decode memory (what dit_core.memory counts for the decode)


class LiveTensorBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """The largest number of tensor bytes alive at once while the mode is on (each storage counted once, until
    it is freed). On the meta device it measures a full-size decode without computing anything."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._storages: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import weakref

        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = id(storage)
            known = self._storages.get(key)
            if known is not None and known() is storage:
                continue
            size = storage.nbytes()
            self._storages[key] = weakref.ref(storage, lambda _ref, size=size, key=key: self._free(size, key))
            self.live += size
            self.peak = max(self.peak, self.live)
        return out

    def _free(self, size: int, key: int) -> None:
        self.live -= size
        self._storages.pop(key, None)


def decode_peak(vae: OpenSoraVAE, height: int, width: int, frames: int) -> int:
    z = torch.zeros(1, vae.latent_channels, vae.latent_frames(frames), height // 8, width // 8, device="meta")
    with LiveTensorBytes() as live:
        vae.decode(z, frames)
    return live.peak


def published_vae(dtype=torch.float32, **kwargs) -> OpenSoraVAE:
    with torch.device("meta"):
        return OpenSoraVAE(**kwargs).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_estimate_covers_the_tensors_a_decode_holds(dtype):
    """The published layout at full size, on the meta device: the estimate covers the tensors alive at the
    decode's peak (the 2-D decoder's 256-channel feature maps at full resolution, four frames at a time), with
    room for allocator overhead (peak resident memory of CPU decodes grew about 1.03x as fast as these tensors,
    after a fixed ~130 MB counted as workspace), and is not wildly above them. The old flat 48 bytes per pixel and frame in flight counted about 1/60 of this."""
    vae = published_vae(dtype)
    height, width, frames = 256, 256, 17
    measured = decode_peak(vae, height, width, frames)
    estimate = vae.decode_working_bytes(height, width, frames=frames) - DECODE_WORKSPACE_BYTES
    assert 1.1 * measured <= estimate <= 1.5 * measured
    widest = 4 * height * width * 256 * dtype.itemsize  # one full-resolution feature map of 4 frames
    assert measured >= 2.5 * widest
    assert estimate > 50 * 48 * 4 * height * width


def test_decode_estimate_with_tiling_follows_the_tile():
    vae = published_vae(tiling=128)
    height, width, frames = 256, 512, 17
    measured = decode_peak(vae, height, width, frames)
    estimate = vae.decode_working_bytes(height, width, frames=frames)
    assert 1.1 * measured <= estimate - DECODE_WORKSPACE_BYTES <= 1.5 * measured
    untiled = vae.decode_working_bytes(height, width, frames=frames, tile=None)
    assert estimate < vae.decode_working_bytes(height, width, frames=frames, tile=256) < untiled
    assert estimate < untiled / 3
    # a frame that fits in one tile decodes as without tiling
    assert vae.decode_working_bytes(128, 128, frames=frames) == vae.decode_working_bytes(128, 128, frames=frames,
                                                                                           tile=None)
    # the 2-D stage stops growing with the frame; the temporal decoder (whole frames) still does, more slowly
    small, large = (vae.decode_working_bytes(s, s, frames=frames) for s in (512, 1024))
    full_small, full_large = (vae.decode_working_bytes(s, s, frames=frames, tile=None) for s in (512, 1024))
    assert large - small < (full_large - full_small) / 4


def test_decode_estimate_is_bounded_by_the_chunk():
    vae = published_vae()
    one, three = (vae.decode_working_bytes(256, 256, frames=f) for f in (17, 51))
    assert one == three
    assert vae.decode_working_bytes(256, 256, frames=1) < one
