"""How ``bench_gpu.py`` measures: device syncs and peak memory, per-step times of a denoiser, a timed generation
and decode, the matmul FLOPs of one STDiT3 forward, and the distance between two results."""

from __future__ import annotations

import gc
import time

import torch

GB = 2**30


class Device:
    def __init__(self, name: str):
        self.torch = torch.device(name)
        self.cuda = self.torch.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.torch)

    def reset_peak(self):
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.torch)

    def peak_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.torch) / GB if self.cuda else None

    def free(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


class StepClock:
    """Wraps a denoiser: a time stamp (after a device sync) before every call, so per-step times can be read."""

    def __init__(self, model, device: Device):
        self.__dict__.update(model=model, device=device, stamps=[])

    def __call__(self, *args, **kwargs):
        self.device.sync()
        self.stamps.append(time.perf_counter())
        return self.model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.__dict__["model"], name)

    def stop(self) -> list[float]:
        self.device.sync()
        self.stamps.append(time.perf_counter())
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def denoiser_flops(dit: dict, batch: int, frames: int, tokens: int, text: int) -> float:
    """Matmul FLOPs of one STDiT3 forward (all blocks; embedders and final layer left out)."""
    c, depth = dit["hidden_size"], dit["depth"]
    n = batch * frames * tokens
    linear = 2 * n * c * c * (3 + 1 + 1 + 1 + 2 * 4)  # qkv, proj, cross q, cross proj, mlp (ratio 4)
    kv = 2 * batch * text * c * 2 * c
    cross = 4 * n * text * c
    spatial = 4 * batch * frames * tokens * tokens * c
    temporal = 4 * batch * tokens * frames * frames * c
    return depth * (2 * (linear + kv + cross) + spatial + temporal)


def compare(a: torch.Tensor, ref: torch.Tensor) -> dict:
    a, ref = a.float().cpu(), ref.float().cpu()
    diff = (a - ref).abs()
    scale = ref.abs().max().item()
    return dict(max_abs=diff.max().item(), mean_abs=diff.mean().item(), ref_max_abs=scale,
                rel_max=diff.max().item() / max(scale, 1e-12),
                rel_rms=(diff.pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-12)).item())


def timed_generation(sample, model, plan: dict, device: Device) -> tuple[torch.Tensor, dict]:
    """``sample(model, steps)`` -> latents. Times it as ``plan`` says; returns the latents and the timings."""
    steps, warmup, timed = plan["steps"], plan["warmup"], plan["timed"]
    if timed:
        device.reset_peak()
        clock = StepClock(model, device)
        z = sample(clock, warmup + timed)
        durations = clock.stop()
        per_step = sum(durations[warmup:]) / timed
        info = dict(mode=f"{timed} steps timed after {warmup} warm-up of a {warmup + timed}-step schedule",
                    schedule=warmup + timed, step_s=per_step, denoise_s=per_step * steps, estimated=True,
                    first_steps_s=durations[:warmup], timed_steps_s=durations[warmup:])
    else:
        if warmup:
            sample(model, warmup)
        device.reset_peak()
        clock = StepClock(model, device)
        z = sample(clock, steps)
        durations = clock.stop()
        info = dict(mode=f"all {steps} steps timed after a {warmup}-step warm-up run", schedule=steps,
                    step_s=sum(durations) / steps, denoise_s=sum(durations), estimated=False,
                    timed_steps_s=durations)
    info["peak_denoise_gb"] = device.peak_gb()
    return z, info


def timed_decode(decode, z: torch.Tensor, frames: int, device: Device) -> tuple[torch.Tensor, dict]:
    decode(z[:, :, :5], min(frames, 17))  # warm-up on one chunk
    device.sync()
    device.reset_peak()
    start = time.perf_counter()
    video = decode(z, frames)
    device.sync()
    return video, dict(decode_s=time.perf_counter() - start, peak_decode_gb=device.peak_gb())
