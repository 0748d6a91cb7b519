"""STDiT3 parity with upstream Open-Sora 1.2, key layout, dtypes and loader errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from charmotion.dit_core.attention import AttentionBackendError, KeyLengths, attention
from charmotion.dit_core.checkpoint import CheckpointError
from charmotion.dit_core.models import STDIT3_XL_2, STDiT3Config, build_stdit3, infer_stdit3_config, load_stdit3
from golden_data import case_weights_path, golden_cases, golden_dir, load_case_tensors

FORWARD_CASES = golden_cases("stdit3_forward")


def run_case(model, tensors):
    return model(
        tensors["x"],
        tensors["timestep"],
        tensors["y"],
        mask=tensors.get("mask"),
        x_mask=tensors.get("x_mask"),
        fps=tensors["fps"],
        height=tensors["height"],
        width=tensors["width"],
    )


@pytest.mark.parametrize("backend", ["math", "sdpa"])
@pytest.mark.parametrize("case", FORWARD_CASES)
def test_forward_matches_upstream(case, backend):
    model = load_stdit3(case_weights_path(case), attention=backend)
    tensors = load_case_tensors(case)
    out = run_case(model, tensors)
    expected = tensors["expected"]
    assert out.shape == expected.shape
    assert out.dtype == torch.float32
    worst = (out - expected).abs().max().item()
    assert worst <= case["tolerance"], f"{case['name']} [{backend}]: max abs error {worst:.3g} > {case['tolerance']}"


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_config_inferred_from_shapes(case):
    model = load_stdit3(case_weights_path(case))
    for key, value in case["config"].items():
        got = getattr(model.config, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_published_xl2_key_layout_matches_meta_model():
    published = json.loads((golden_dir() / "opensora12_keys.json").read_text())["STDiT3-XL/2"]
    model = build_stdit3(STDiT3Config(**STDIT3_XL_2))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(ours) == sorted(published)
    mismatched = {k: (ours[k], published[k]) for k in published if ours[k] != published[k]}
    assert not mismatched
    inferred = infer_stdit3_config({k: tuple(v) for k, v in published.items()})
    assert (inferred.depth, inferred.hidden_size, inferred.num_heads, inferred.head_dim) == (28, 1152, 16, 72)
    assert inferred.patch_size == (1, 2, 2) and inferred.pred_sigma and inferred.qk_norm
    assert (inferred.caption_channels, inferred.model_max_length) == (4096, 300)
    n_params = sum(v.numel() for k, v in model.state_dict().items() if k != "y_embedder.y_embedding")
    assert 1.1e9 < n_params < 1.25e9


@pytest.mark.parametrize("dtype,tolerance", [(torch.bfloat16, 0.03), (torch.float16, 0.005)])
@pytest.mark.parametrize("case", FORWARD_CASES)
def test_half_precision_forward_is_finite_and_close(case, dtype, tolerance):
    """Weights load straight into the half dtype; the forward stays finite and close to fp32.

    Upstream rounds the timestep to the model dtype before embedding it, so
    the fp32 reference is run with the timestep rounded the same way
    (measured on the golden weights: bf16 <= 1.3 %, fp16 <= 0.13 % of the
    largest output).
    """
    tensors = load_case_tensors(case)
    model = load_stdit3(case_weights_path(case), dtype=dtype)
    assert all(p.dtype == dtype for p in model.parameters())
    try:
        out = run_case(model, tensors)
    except RuntimeError as exc:  # a CPU build without kernels for this dtype
        pytest.skip(f"{dtype} not supported on this CPU build: {exc}")
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    reference = run_case(load_stdit3(case_weights_path(case)), {**tensors, "timestep": tensors["timestep"].to(dtype).float()})
    rel = ((out - reference).abs().max() / reference.abs().max()).item()
    assert rel < tolerance, f"{case['name']} {dtype}: deviates {rel:.4f} (relative) from fp32"


def test_prefixed_and_pickled_checkpoints_load(tmp_path):
    case = FORWARD_CASES[0].values[0]
    state = load_file(str(case_weights_path(case)))
    tensors = load_case_tensors(case)
    prefixed = {"module." + k: v for k, v in state.items()}
    pt_path = tmp_path / "ema.pt"
    torch.save({"model": prefixed}, pt_path)
    for source in (prefixed, pt_path):
        out = run_case(load_stdit3(source), tensors)
        assert (out - tensors["expected"]).abs().max() <= case["tolerance"]


def test_missing_rope_freqs_is_rebuilt():
    case = FORWARD_CASES[0].values[0]
    state = load_file(str(case_weights_path(case)))
    state.pop("rope.freqs")
    tensors = load_case_tensors(case)
    out = run_case(load_stdit3(state), tensors)
    assert (out - tensors["expected"]).abs().max() <= case["tolerance"]


def test_wrong_family_file_is_named():
    vae_case = next(c for c in json.loads((golden_dir() / "cases.json").read_text())["cases"] if c["kind"] == "vae_pipeline")
    with pytest.raises(CheckpointError, match="Open-Sora VAE v1.2 video VAE"):
        load_stdit3(golden_dir() / vae_case["weights"])


def test_a_shard_of_a_split_stdit3_is_named_as_one(tmp_path):
    from charmotion.dit_core.checkpoint import detect_family
    from charmotion.dit_core.families import load_denoiser

    state = load_file(str(case_weights_path(FORWARD_CASES[0].values[0])))
    keys = sorted(state)  # spatial_blocks.* sort before temporal_blocks.*: no shard holds both of the first blocks
    assert detect_family(keys) == "stdit3"
    assert detect_family(["blocks.0.attn.qkv.weight", "y_embedder.y_proj.fc1.weight"]) == "pixart"
    for number, shard in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:]), 1):
        assert detect_family(shard) == "stdit3_part"  # not PixArt, whose blocks.0.attn.qkv ends temporal_blocks.0's
        path = tmp_path / f"model-0000{number}-of-00002.safetensors"
        save_file({k: state[k] for k in shard}, str(path))
        with pytest.raises(CheckpointError, match="part of an Open-Sora 1.2 STDiT3.*one shard of a split file; give "
                                                  "the whole model file"):
            load_denoiser(path)
    depth = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("temporal_blocks."))
    assert detect_family([k for k in keys if not k.startswith(f"temporal_blocks.{depth - 1}.")]) == "stdit3_part"


def test_truncated_file_says_download_again(tmp_path):
    case = FORWARD_CASES[0].values[0]
    data = case_weights_path(case).read_bytes()
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_stdit3(broken)


def test_shape_mismatch_names_the_tensor(tmp_path):
    case = FORWARD_CASES[0].values[0]
    state = load_file(str(case_weights_path(case)))
    state["spatial_blocks.1.mlp.fc1.weight"] = state["spatial_blocks.1.mlp.fc1.weight"][:-8].clone()
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"spatial_blocks\.1\.mlp\.fc1\.weight has shape"):
        load_stdit3(path)


def test_missing_and_unexpected_keys_are_listed():
    case = FORWARD_CASES[0].values[0]
    state = load_file(str(case_weights_path(case)))
    state.pop("temporal_blocks.0.attn.proj.bias")
    state["spatial_blocks.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"Missing keys: temporal_blocks\.0\.attn\.proj\.bias.*Unexpected keys: spatial_blocks\.0\.extra\.weight"):
        load_stdit3(state)


def test_sidecar_config_gives_head_count_without_qk_norm(tmp_path):
    config = STDiT3Config(depth=1, hidden_size=48, num_heads=3, in_channels=4, caption_channels=8, model_max_length=4, qk_norm=False)
    model = build_stdit3(config, device="cpu")
    path = tmp_path / "noqk.safetensors"
    state = dict(model.state_dict())
    assert load_stdit3(state).config.num_heads == 3  # the rotary table gives the head size
    state.pop("rope.freqs")
    save_file(state, str(path))
    assert load_stdit3(path).config.num_heads == 1  # 48 channels / published head size 72 -> at least one head
    (tmp_path / "noqk.json").write_text(json.dumps({"num_heads": 3}))
    assert load_stdit3(path).config.num_heads == 3


def test_xformers_on_cpu_or_missing_is_an_actionable_error(monkeypatch):
    case = FORWARD_CASES[0].values[0]
    with pytest.raises(AttentionBackendError, match="needs a CUDA GPU.*'sdpa'"):
        load_stdit3(case_weights_path(case), attention="xformers")
    from charmotion.dit_core import attention as attention_module

    monkeypatch.setattr(attention_module, "_xformers_ops", lambda: (None, "ModuleNotFoundError: No module named 'xformers'"))
    attention_module._xformers_cuda_problem.cache_clear()
    with pytest.raises(AttentionBackendError, match="pip install xformers"):
        attention_module.check_backend("xformers", "cuda")
    assert attention_module.check_backend("auto", "cuda") == "sdpa"
    attention_module._xformers_cuda_problem.cache_clear()
    with pytest.raises(AttentionBackendError, match="unknown attention backend"):
        attention_module.check_backend("flash")


def test_xformers_that_imports_but_cannot_run_is_not_used(monkeypatch):
    """An xformers wheel built for another torch imports, then has no kernels: 'auto' falls back to SDPA and an
    explicit request says why."""
    from charmotion.dit_core import attention as attention_module

    probes = []

    class BrokenOps:
        @staticmethod
        def memory_efficient_attention(q, k, v):
            probes.append(q.shape)
            raise NotImplementedError("No operator found for `memory_efficient_attention_forward`\n details")

    monkeypatch.setattr(attention_module, "_xformers_ops", lambda: (BrokenOps, None))
    monkeypatch.setattr(attention_module, "_probe_query", lambda device: torch.zeros(1, 8, 2, 64))  # no GPU needed
    attention_module._xformers_cuda_problem.cache_clear()
    try:
        assert attention_module.check_backend("auto", "cuda") == "sdpa"
        assert not attention_module.xformers_available("cuda") and attention_module.xformers_available()
        with pytest.raises(AttentionBackendError, match=r"cannot run on cuda \(NotImplementedError: No operator found for "
                                                        r"`memory_efficient_attention_forward`\).*built for another torch"):
            attention_module.check_backend("xformers", "cuda")
        assert probes == [(1, 8, 2, 64)]  # one probe for the device, then its answer is reused
    finally:
        attention_module._xformers_cuda_problem.cache_clear()


def test_variable_length_cross_attention_matches_per_sample():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 10, 2, 8, generator=gen)
    lens = [4, 7, 1]
    k = torch.randn(1, sum(lens), 2, 8, generator=gen)
    v = torch.randn(1, sum(lens), 2, 8, generator=gen)
    starts = [0, 4, 11]
    reference = torch.cat(
        [attention(q[i : i + 1], k[:, s : s + n], v[:, s : s + n], backend="math") for i, (s, n) in enumerate(zip(starts, lens))]
    )
    prepared = KeyLengths.build(lens)
    assert prepared.mask.tolist() == [[n > i for i in range(7)] for n in lens]
    assert prepared.index.tolist() == [0, 1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14]
    for backend in ("math", "sdpa"):
        for kv_lens in (lens, prepared):
            out = attention(q, k, v, backend=backend, kv_lens=kv_lens)
            assert (out - reference).abs().max() < 1e-5, backend


def test_a_caption_with_no_valid_token_is_refused_by_the_model():
    config = STDiT3Config(depth=1, hidden_size=48, num_heads=3, in_channels=4, caption_channels=8, model_max_length=4)
    model = build_stdit3(config, device="cpu")
    x, y = torch.zeros(2, 4, 1, 4, 4), torch.zeros(2, 1, 4, 8)
    with pytest.raises(ValueError, match=r"token counts \[2, 0\].*encode a non-empty prompt"):
        model(x, torch.tensor([500.0, 500.0]), y, mask=torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]))


def test_key_lengths_equal_lengths_need_no_mask_and_empty_captions_are_refused():
    same = KeyLengths.build([5, 5])
    assert same.lens == (5, 5) and same.mask is None and same.index is None
    with pytest.raises(ValueError, match=r"token counts \[3, 0\].*encode a non-empty prompt"):
        KeyLengths.build([3, 0])
