"""On a CUDA GPU the models compute what they compute on the CPU: golden parity in float32 for every attention
backend (xformers too where installed), bfloat16 close to float32, and the built-in model's clips. Skipped
without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden_data import case_weights_path, golden_cases, load_case_tensors

from charmotion.dit_core.attention import xformers_available
from charmotion.dit_core.models import load_stdit3
from charmotion.dit_core.builtin.model import load_builtin
from charmotion.training.dataset import make_example
from charmotion.training.evaluate import animate, reference_rgba
from charmotion.dit_core.vae import load_opensora_vae

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FORWARD_CASES = golden_cases("stdit3_forward")
VAE_CASES = golden_cases("vae_pipeline")
BACKENDS = ["math", "sdpa"] + (["xformers"] if torch.cuda.is_available() and xformers_available("cuda") else [])


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 matrix products and convolutions would move float32 results by ~1e-3; parity is checked without."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def on_cuda(tensors: dict) -> dict:
    return {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in tensors.items()}


def forward(model, tensors):
    return model(tensors["x"], tensors["timestep"], tensors["y"], mask=tensors.get("mask"), x_mask=tensors.get("x_mask"),
                 fps=tensors["fps"], height=tensors["height"], width=tensors["width"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", FORWARD_CASES)
def test_stdit3_matches_upstream_on_cuda(case, backend):
    model = load_stdit3(case_weights_path(case), device="cuda", attention=backend)
    tensors = load_case_tensors(case)
    out = forward(model, on_cuda(tensors)).cpu()
    worst = (out - tensors["expected"]).abs().max().item()
    assert worst <= case["tolerance"], f"{case['name']} [{backend}]: max abs error {worst:.3g} > {case['tolerance']}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", FORWARD_CASES)
def test_stdit3_bfloat16_on_cuda_is_close_to_float32(case, backend):
    tensors = on_cuda(load_case_tensors(case))
    half = forward(load_stdit3(case_weights_path(case), dtype=torch.bfloat16, device="cuda", attention=backend), tensors)
    reference = forward(load_stdit3(case_weights_path(case), device="cuda"),
                        {**tensors, "timestep": tensors["timestep"].to(torch.bfloat16).float()})
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    rel = ((half - reference).abs().max() / reference.abs().max()).item()
    assert rel < 0.03, f"{case['name']} [{backend}]: bfloat16 deviates {rel:.4f} (relative) from float32"


@pytest.mark.parametrize("case", VAE_CASES)
def test_vae_matches_upstream_on_cuda(case):
    tensors = load_case_tensors(case)
    vae = load_opensora_vae(case_weights_path(case), config=case, device="cuda")
    z = vae.encode(tensors["x"].cuda()).cpu()
    decoded = vae.decode(tensors["z"].cuda(), case["num_frames"]).cpu()
    worst = max((z - tensors["z"]).abs().max().item(), (decoded - tensors["decoded"]).abs().max().item())
    assert worst <= case["tolerance"], f"worst error {worst:.3g} > {case['tolerance']}"


def test_builtin_model_gives_the_cpu_clip_on_cuda():
    example = make_example(5, "heldout", 8, action="jump", amplitude=0.8)

    def clip(device):
        bundle = load_builtin(device=device)
        return animate(bundle, reference_rgba(example), example["prompt"], strength=0.8, seed=1, frames=8, steps=4,
                       key_color=example["key_color"])

    cpu, cuda = clip("cpu").astype(int), clip("cuda").astype(int)
    assert cuda.shape == cpu.shape == (8, 64, 64, 3)
    differ = (np.abs(cuda - cpu).max(axis=-1) > 0).mean()
    assert differ < 0.02, f"CUDA clip differs from the CPU clip in {differ:.1%} of the pixels"


def test_training_on_cuda_resumes(tmp_path):
    import json

    from charmotion.training import train

    small = {"model": {"depth": 1, "hidden_size": 32, "num_heads": 2},
             "text_encoder": {"dim": 16, "buckets": 256, "layers": 1, "heads": 2}}

    def run(out, device, *extra):
        train.main(["--out", str(out), "--device", device, "--batch-size", "2", "--clips", "4", "--workers", "0",
                    "--heldout-clips", "2", "--log-every", "1", "--eval-every", "100", "--warmup", "1",
                    "--config", json.dumps(small), *extra])

    run(tmp_path / "gpu", "cuda", "--steps", "2")
    run(tmp_path / "gpu", "cuda", "--steps", "3", "--resume")
    log = [json.loads(line) for line in (tmp_path / "gpu" / "log.jsonl").read_text().splitlines() if "lr" in line]
    assert [entry["step"] for entry in log] == [1, 2, 3] and all(0 < entry["loss"] < 20 for entry in log)
    assert load_builtin(tmp_path / "gpu" / "charmotion_builtin.safetensors").info["device"] == "cuda"
