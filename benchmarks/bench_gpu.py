"""Open-Sora 1.2 side by side: upstream's code and ours, one generation each, same weights, same noise.

For each frame size, one text-to-video generation (rectified flow, classifier-free guidance against the null
caption, i.e. a batch of 2 per step) followed by the VAE decode, with:

* ``upstream``: Open-Sora v1.2.0 itself (``--upstream PATH``, a source tree kept outside this repository),
  built and sampled with its own code: STDiT3 as its inference config sets it up (q/k norm, flash attention for
  spatial self-attention, xformers for cross-attention; apex's fused LayerNorm off), its ``RFLOW.sample`` and its
  ``VideoAutoencoderPipeline.decode``. See ``_upstream.py`` for what stands in for which package;
* ``sdpa``, ``xformers``, ``math``: ours (``dit_core``) with that attention backend;
* ``compile``: ours (sdpa) with every block compiled by ``torch.compile``.

The weights are random (seeded): upstream's STDiT3 and VAE are built with upstream's own initialisation (the
output projections it zero-initialises get N(0, 0.02) weights so that every block contributes), and ours are
loaded from their state dicts through our loaders. T5 is replaced by fixed random caption embeddings with a
valid-token mask, answered to upstream's sampler through its text-encoder interface (``encode``/``null``). The
initial noise is drawn once per size and given to both samplers (in bf16 runs, rounded to bf16, as upstream's
script draws it).

Timing: ``--timed-steps K`` (default 3 for the published sizes) runs a schedule of W + K steps, W warm-up steps
first (``--warmup-steps``, default 1; kernel selection, compilation), and times the K steps after them; seconds
per step times ``--steps`` (default 30) gives the denoising time of a full generation. ``--timed-steps 0`` times
the whole ``--steps`` generation after a separate warm-up call. The decode is timed after a one-chunk warm-up.
Peak memory is ``torch.cuda.max_memory_allocated`` (reset before each phase), with the row's own DiT and VAE
resident. The ours-vs-upstream check compares the final latents of the same (possibly short) schedule: max abs
error against ``--tol`` x max|z_upstream|, by default 1e-4 in float32 (exact maths: on the tiny preset ours and
upstream agree to about 1e-6 of max|z|) and 0.1 in bf16. In bf16 two correct implementations differ by rounding,
amplified by guidance 7: on the tiny preset, ours with sdpa and ours with math attention are 2-4 % of max|z|
apart after a 3-4 step schedule, as far as either is from upstream, while a wrong formula shows as an error of
order max|z|. Where two of our backends ran, their distance is printed beside the check as that noise floor.

Examples::

    python benchmarks/bench_gpu.py --upstream .upstream/Open-Sora --json out/bench.json   # 480p + 720p, bf16
    python benchmarks/bench_gpu.py --upstream .upstream/Open-Sora --timed-steps 0          # full 30-step runs
    python benchmarks/bench_gpu.py --upstream .upstream/Open-Sora --sizes 240x426 --dtype fp32 --rows upstream sdpa
    python benchmarks/bench_gpu.py --upstream .upstream/Open-Sora --preset tiny            # CPU check, float32
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from _measure import Device, compare, denoiser_flops, timed_decode, timed_generation
from _pack import load_pack  # benchmarks/ is on sys.path when run as a script

PRESETS = {
    # the published STDiT3-XL/2 + OpenSora-VAE-v1.2, at upstream's 480p and 720p 9:16 buckets (H x W), 51 frames
    "xl": dict(
        dit=dict(depth=28, hidden_size=1152, num_heads=16, patch_size=(1, 2, 2), caption_channels=4096,
                 model_max_length=300),
        vae=None, sizes=("480x854", "720x1280"), frames=51, text_tokens=48, device="cuda", dtype="bf16",
        timed_steps=3, rows=("upstream", "sdpa", "xformers", "compile"),
    ),
    # a seconds-long CPU check of the agreement: tiny DiT, tiny VAE (factor 2), 17 frames
    "tiny": dict(
        dit=dict(depth=2, hidden_size=64, num_heads=4, patch_size=(1, 2, 2), caption_channels=32,
                 model_max_length=8),
        vae=dict(
            spatial=dict(in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8),
            temporal=dict(in_out_channels=4, latent_embed_dim=4, embed_dim=4, filters=16, num_res_blocks=1,
                          channel_multipliers=(1, 2, 2, 2), temporal_downsample=(False, True, True), num_groups=8),
            groups=8,
        ),
        sizes=("32x48",), frames=17, text_tokens=5, device="cpu", dtype="fp32", timed_steps=0,
        rows=("upstream", "sdpa", "math"),
    ),
}
ROWS = ("upstream", "sdpa", "xformers", "math", "compile")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
DEFAULT_TOL = {"bf16": 1e-1, "fp16": 5e-2, "fp32": 1e-4}


# -- helpers ---------------------------------------------------------------------------------------------------

def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"size {text!r}: write HEIGHTxWIDTH in pixels, e.g. 480x854") from None
    return h, w


def size_name(h: int, w: int) -> str:
    return f"{min(h, w)}p" if min(h, w) in (144, 240, 360, 480, 720, 1080) else f"{h}x{w}"


class RandomCaptions:
    """Upstream's text-encoder interface (``encode``/``null``) answered with fixed caption embeddings."""

    def __init__(self, y: torch.Tensor, mask: torch.Tensor, model):
        self.y, self.mask, self.model = y, mask, model

    def encode(self, prompts):
        n = len(prompts)
        return dict(y=self.y.repeat(n, 1, 1, 1), mask=self.mask.repeat(n, 1))

    def null(self, n):  # the model's learned null caption, as upstream's T5Encoder.null gives it
        return self.model.y_embedder.y_embedding[None].repeat(n, 1, 1)[:, None]


def give_weight(model, generator_seed: int):
    """N(0, 0.02) for the weights upstream zero-initialises (temporal output projections, fps embedder output)."""
    gen = torch.Generator(device=model.x_embedder.proj.weight.device).manual_seed(generator_seed)
    params = [model.fps_embedder.mlp[2].weight]
    for block in model.temporal_blocks:
        params += [block.attn.proj.weight, block.cross_attn.proj.weight, block.mlp.fc2.weight]
    for p in params:
        p.normal_(0, 0.02, generator=gen)


# -- the benchmark ---------------------------------------------------------------------------------------------

class Bench:
    """Shared state of one run: settings, the weights (upstream's state dicts), captions, noise and results."""

    def __init__(self, args, preset: dict):
        self.args, self.preset = args, preset
        self.dtype_name = args.dtype or preset["dtype"]
        self.dtype = DTYPES[self.dtype_name]
        self.device = Device(args.device or preset["device"])
        self.sizes = [parse_size(s) for s in (args.sizes or preset["sizes"])]
        self.frames = args.frames or preset["frames"]
        self.rows = list(dict.fromkeys(args.rows or preset["rows"]))
        timed = preset["timed_steps"] if args.timed_steps is None else args.timed_steps
        self.plan = dict(steps=args.steps, warmup=args.warmup_steps, timed=timed)
        self.tol = DEFAULT_TOL[self.dtype_name] if args.tol is None else args.tol
        self.tokens = args.text_tokens or preset["text_tokens"]
        self.dit_sizes, self.vae_cfg = preset["dit"], preset["vae"]
        self.upstream_latents, self.upstream_video, self.first_ours = {}, {}, {}
        self.results = None

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def save(self):
        if self.args.json:
            path = Path(self.args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(json.dumps(self.results, indent=1))
            os.replace(tmp, path)

    def note(self, text: str):
        self.results["notes"].append(text)
        print(f"note: {text}", flush=True)

    def record(self, row: dict):
        finish_row(row, self.args, self.device)
        self.results["rows"].append(row)
        self.save()
        show_row(row)
        self.device.free()

    # -- inputs --------------------------------------------------------------------------------------------------
    def build_weights(self, up):
        """Upstream's STDiT3 and VAE with upstream's initialisation (seeded); their float32 state dicts on the CPU."""
        args, device = self.args, self.device
        start = time.perf_counter()
        torch.manual_seed(args.seed)
        dit = up.build_stdit3(device=device.torch, flash_attn=args.upstream_attn == "flash", **self.dit_sizes)
        give_weight(dit, args.seed + 1)
        torch.manual_seed(args.seed + 2)
        small = {} if self.vae_cfg is None else dict(spatial=self.vae_cfg["spatial"], temporal=self.vae_cfg["temporal"])
        vae = up.build_vae(device=device.torch, **small)
        self.dit_state = {k: v.detach().to("cpu", copy=True) for k, v in dit.state_dict().items()}
        self.vae_state = {k: v.detach().to("cpu", copy=True) for k, v in vae.state_dict().items()}
        params = sum(v.numel() for k, v in self.dit_state.items() if k != "y_embedder.y_embedding")
        self.note(f"random weights built with upstream's initialisation in {time.perf_counter() - start:.1f} s "
                  f"(DiT {params / 1e9:.3f} B parameters)")

        d = self.dit_sizes
        gen = torch.Generator().manual_seed(args.seed + 3)
        self.caption = torch.randn(1, 1, d["model_max_length"], d["caption_channels"], generator=gen) * 0.1
        self.text_mask = torch.zeros(1, d["model_max_length"], dtype=torch.long)
        self.text_mask[:, :self.tokens] = 1
        # upstream's get_latent_size assumes the published 8x spatial factor; the tiny VAE has 2x
        factor = 8 if self.vae_cfg is None else 2 ** (len(self.vae_cfg["spatial"]["block_out_channels"]) - 1)
        frames = vae.get_latent_size([self.frames, None, None])[0]  # Open-Sora VAE v1.2's chunked temporal coding
        self.noise = {}
        for i, (h, w) in enumerate(self.sizes):
            shape = (1, 4, frames, h // factor, w // factor)
            z = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed + 10 + i), dtype=torch.float32)
            # bf16 runs: bf16 values (upstream's script draws its noise in the model dtype), given to both as float32
            self.noise[(h, w)] = z if self.dtype == torch.float32 else z.to(self.dtype).float()
        return dit.to(self.dtype).eval(), vae.to(self.dtype).eval()

    def check_first_timestep(self, up, h: int, w: int):
        info = {k: torch.tensor([float(v)], dtype=self.dtype if self.dtype != torch.float16 else torch.float32)
                for k, v in dict(height=h, width=w, num_frames=self.frames).items()}
        t0 = up.rectified_flow.timestep_transform(torch.tensor([1000.0]), info, num_timesteps=1000).item()
        if t0 > 1000:
            self.note(f"{h}x{w}: upstream's first transformed timestep is {t0:.5f} > 1000, so upstream discards its "
                      "first step (a known upstream quirk): ours cannot agree with it at this size")

    # -- rows ----------------------------------------------------------------------------------------------------
    def run_upstream(self, up, dit, vae):
        args, device, dtype, frames = self.args, self.device, self.dtype, self.frames
        text = RandomCaptions(self.caption.to(device.torch), self.text_mask.to(device.torch), dit)
        cross = "xformers" if up.xformers.startswith("xformers") else "sdpa stand-in"
        for h, w in self.sizes:
            self.check_first_timestep(up, h, w)
            z0 = self.noise[(h, w)]
            extra = {k: torch.tensor([float(v)], device=device.torch, dtype=dtype) for k, v in
                     dict(height=h, width=w, num_frames=frames, ar=h / w, fps=24.0).items()}

            def sample(model, steps, z0=z0, extra=extra):
                return up.rflow_sampler(steps, args.cfg).sample(
                    model, text, z=z0.to(device.torch), prompts=["benchmark"], device=device.torch,
                    additional_args=extra, mask=torch.ones(1, z0.shape[2], device=device.torch), progress=False)

            row = base_row("upstream", f"upstream v1.2.0 ({args.upstream_attn} + {cross})", h, w, frames, z0,
                           self.dit_sizes, self.tokens, args)
            try:
                z, timing = timed_generation(sample, dit, self.plan, device)
                row.update(timing)
                self.upstream_latents[(h, w)] = z.float().cpu()
                if not args.no_decode:
                    video, dec = timed_decode(lambda z_, f: vae.decode(z_.to(dtype), num_frames=f), z, frames, device)
                    row.update(dec)
                    self.upstream_video[(h, w)] = video.float().cpu()
            except Exception as exc:  # one failing row must not lose the others
                row["error"] = f"{type(exc).__name__}: {exc}"
            self.record(row)

    def run_ours(self, backends):
        from charmotion.dit_core.attention import xformers_available
        from charmotion.dit_core.families import OPENSORA12_PROFILE as PROFILE
        from charmotion.dit_core.models import load_stdit3
        from charmotion.dit_core.sampling import TextCondition, rectified_flow_timesteps, sample_rectified_flow
        from charmotion.dit_core.vae import load_opensora_vae

        args, device, dtype, frames = self.args, self.device, self.dtype, self.frames
        start = time.perf_counter()
        dit = load_stdit3(self.dit_state, dtype=dtype, device=device.torch, attention="sdpa")
        groups = None if self.vae_cfg is None else {"spatial_config": {"norm_num_groups": self.vae_cfg["groups"]},
                                                    "temporal_config": {"num_groups": self.vae_cfg["groups"]}}
        vae = load_opensora_vae(self.vae_state, dtype=dtype, device=device.torch, config=groups)
        self.note(f"ours loaded from upstream's state dicts in {time.perf_counter() - start:.1f} s")
        cond = TextCondition(self.caption.to(device.torch), self.text_mask.to(device.torch))
        # the sizes and fps the model is told, in the model dtype where it is bf16 (as generate() passes them)
        told = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
        decoded = {}
        for backend in backends:
            if backend == "xformers" and not (device.cuda and xformers_available(device.torch)):
                self.note("ours xformers: skipped, xformers cannot run attention here (not installed, no CUDA, or a "
                          "build that does not match this torch)")
                continue
            dit.set_attention_backend("sdpa" if backend == "compile" else backend)
            if backend == "compile":
                for block in (*dit.spatial_blocks, *dit.temporal_blocks):
                    block.compile(backend=args.compile_backend)
            for h, w in self.sizes:
                z0 = self.noise[(h, w)]
                kwargs = {k: torch.full((1,), float(v), dtype=told, device=device.torch)
                          for k, v in dict(fps=PROFILE.fps, height=h, width=w).items()}
                if backend == "compile":
                    torch.compiler.reset()  # static shapes per size; the warm-up step shows the compile time

                def sample(model, steps, z0=z0, kwargs=kwargs, h=h, w=w):
                    timesteps = rectified_flow_timesteps(
                        steps, num_timesteps=PROFILE.num_timesteps, use_timestep_transform=PROFILE.use_timestep_transform,
                        height=h, width=w, num_frames=frames, ratio_dtype=told)
                    return sample_rectified_flow(model, z0.to(device.torch), cond, timesteps, cfg_scale=args.cfg,
                                                 model_kwargs=kwargs, num_timesteps=PROFILE.num_timesteps)

                label = "ours, torch.compile per block (sdpa)" if backend == "compile" else f"ours, attention {backend}"
                row = base_row(backend, label, h, w, frames, z0, self.dit_sizes, self.tokens, args)
                check = None
                try:
                    z, timing = timed_generation(sample, dit, self.plan, device)
                    row.update(timing)
                    video = None
                    if not args.no_decode and (h, w) in decoded:  # the VAE does not depend on the DiT's attention
                        row.update(decoded[(h, w)], decode_from=self.first_ours[(h, w)][0])
                    elif not args.no_decode:
                        video, dec = timed_decode(lambda z_, f: vae.decode(z_.to(dtype), f), z, frames, device)
                        row.update(dec)
                        decoded[(h, w)] = dec
                    check = (z.float().cpu(), None if video is None else video.float().cpu())
                    del z, video
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                self.record(row)
                if check is not None:
                    self.agreement(backend, h, w, *check, vae)
                    self.save()

    def agreement(self, backend, h, w, z, video, vae):
        z = z.float().cpu()
        first = self.first_ours.setdefault((h, w), (backend, z))
        if (h, w) not in self.upstream_latents:
            return
        entry = dict(row=backend, size=f"{h}x{w}", dtype=self.dtype_name,
                     latents=compare(z, self.upstream_latents[(h, w)]))
        entry["tolerance_abs"] = self.tol * entry["latents"]["ref_max_abs"]
        entry["ok"] = entry["latents"]["max_abs"] <= entry["tolerance_abs"]
        if first[0] != backend:  # how far two of our own kernels are apart: the precision's noise floor
            entry["vs_" + first[0]] = compare(z, first[1])
        if video is not None and (h, w) in self.upstream_video:
            entry["decoded"] = compare(video, self.upstream_video[(h, w)])
            if not self.device.cuda or self.dtype == torch.float32:  # our VAE alone, on upstream's latents
                ref = self.upstream_latents[(h, w)].to(vae.device, vae.dtype)
                entry["vae_only"] = compare(vae.decode(ref, self.frames), self.upstream_video[(h, w)])
        self.results["agreement"].append(entry)
        lat = entry["latents"]
        extra = ""
        if "vs_" + first[0] in entry:
            extra += f"; vs ours {first[0]} max|dz| {entry['vs_' + first[0]]['max_abs']:.3g}"
        if "decoded" in entry:
            extra += f"; decoded frames max|dx| {entry['decoded']['max_abs']:.3g}"
        if "vae_only" in entry:
            extra += f"; our VAE on upstream's latents max|dx| {entry['vae_only']['max_abs']:.3g}"
        print(f"  agreement {backend} vs upstream at {h}x{w} ({self.dtype_name}): max|dz| {lat['max_abs']:.3g} "
              f"(max|z| {lat['ref_max_abs']:.3g}, rel {lat['rel_max']:.2e}, rel rms {lat['rel_rms']:.2e}; tolerance "
              f"{entry['tolerance_abs']:.3g}) {'ok' if entry['ok'] else 'FAILED'}{extra}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring for what each row runs and how it is timed.")
    parser.add_argument("--upstream", help="folder holding Open-Sora v1.2.0's source tree (its opensora/ package)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="xl",
                        help="xl: published sizes on CUDA (default); tiny: a seconds-long float32 CPU check")
    parser.add_argument("--sizes", nargs="+", help="frame sizes HEIGHTxWIDTH (xl: 480x854 720x1280)")
    parser.add_argument("--frames", type=int, help="pixel frames (xl: 51)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, help="what to run (xl: upstream sdpa xformers compile)")
    parser.add_argument("--steps", type=int, default=30, help="sampling steps of the generation reported (30)")
    parser.add_argument("--timed-steps", type=int, help="time this many steps and extrapolate (xl: 3; 0 = run all)")
    parser.add_argument("--warmup-steps", type=int, default=1, help="untimed steps before the timed ones (1)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="model dtype (xl: bf16, tiny: fp32)")
    parser.add_argument("--device", help="cuda or cpu (xl: cuda, tiny: cpu)")
    parser.add_argument("--cfg", type=float, default=7.0, help="guidance scale (7, upstream's)")
    parser.add_argument("--text-tokens", type=int, help="valid caption tokens of the random caption (xl: 48)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, help="agreement tolerance on max|dz|, relative to max|z_upstream| "
                        f"(default: {', '.join(f'{k} {v:g}' for k, v in DEFAULT_TOL.items())})")
    parser.add_argument("--upstream-attn", choices=["flash", "math"], default="flash",
                        help="upstream self-attention: flash (its inference config) or math (its STDiT3Config default)")
    parser.add_argument("--upstream-xformers", choices=["auto", "real", "standin"], default="auto",
                        help="upstream cross-attention: the installed xformers, a per-block SDPA stand-in, or auto")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile row")
    parser.add_argument("--no-decode", action="store_true", help="skip the VAE decode")
    parser.add_argument("--peak-tflops", type=float, default=989.4,
                        help="the GPU's dense bf16 peak for model FLOPs utilisation (H100 SXM: 989.4)")
    parser.add_argument("--json", help="write the results here (rewritten after every row)")
    args = parser.parse_args(argv)

    bench = Bench(args, PRESETS[args.preset])
    device, plan = bench.device, bench.plan
    if not args.upstream:
        raise SystemExit("bench_gpu: --upstream PATH is required: the folder holding Open-Sora v1.2.0's source tree "
                         "(its opensora/ package), e.g. made with: git -C <clone of hpcaitech/Open-Sora> archive "
                         "v1.2.0 opensora | tar -x -C .upstream/Open-Sora")
    if device.cuda and not torch.cuda.is_available():
        raise SystemExit(f"bench_gpu: preset {args.preset!r} runs on a CUDA GPU, but torch {torch.__version__} sees "
                         "none (torch.cuda.is_available() is False). Run it on a GPU machine, or use --preset tiny "
                         "for the CPU agreement check.")
    if bench.frames < 17:
        raise SystemExit("bench_gpu: use 17 frames or more (Open-Sora 1.2's timestep schedule breaks below 17)")
    if plan["timed"] < 0 or plan["warmup"] < 0 or plan["steps"] < 1 or plan["timed"] > plan["steps"]:
        raise SystemExit("bench_gpu: need --steps >= 1, 0 <= --timed-steps <= --steps, --warmup-steps >= 0")
    if not 1 <= bench.tokens <= bench.dit_sizes["model_max_length"]:
        raise SystemExit(f"bench_gpu: --text-tokens must be 1 to {bench.dit_sizes['model_max_length']}")

    torch.set_grad_enabled(False)
    if bench.dtype == torch.float32 and device.cuda:  # exact float32 for the agreement check
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    import _upstream

    try:
        up = _upstream.load(args.upstream, xformers=args.upstream_xformers)
    except _upstream.UpstreamMissing as exc:
        raise SystemExit(f"bench_gpu: {exc}") from None
    except ImportError as exc:
        raise SystemExit(f"bench_gpu: upstream's code needs {exc.name or exc}, which is not installed here: pip install "
                         "rotary-embedding-torch==0.5.3 diffusers einops tqdm (timm and xformers where they run)") from None
    load_pack()

    env = environment(device, up)
    bench.results = dict(
        env=env, rows=[], agreement=[], notes=[],
        settings=dict(preset=args.preset, dtype=bench.dtype_name, device=str(device.torch),
                      sizes=[f"{h}x{w}" for h, w in bench.sizes], frames=bench.frames, steps=args.steps,
                      warmup_steps=plan["warmup"], timed_steps=plan["timed"], cfg=args.cfg, text_tokens=bench.tokens,
                      seed=args.seed, tolerance_rel=bench.tol, dit=bench.dit_sizes, upstream_attn=args.upstream_attn,
                      rows=bench.rows))
    print(f"# {env['gpu'] or 'cpu'}; torch {env['torch']} (CUDA {env['cuda']}); xformers {env['xformers']}; "
          f"{env['upstream']}", flush=True)
    print(f"# upstream self-attention: {args.upstream_attn} ({env['upstream_flash_attention']}); cross-attention: "
          f"{env['upstream_cross_attention']}; timm: {env['timm']}")
    if plan["timed"]:
        print(f"# timing: {plan['timed']} steps timed after {plan['warmup']} warm-up step(s) of a "
              f"{plan['warmup'] + plan['timed']}-step schedule; s/step x {args.steps} = denoising time (estimated)")
    else:
        print(f"# timing: full {args.steps}-step generations, after a {plan['warmup']}-step warm-up run")
    print(f"# agreement: max|z_ours - z_upstream| <= {bench.tol:g} x max|z_upstream| ({bench.dtype_name}), final "
          "latents of the same schedule, weights and noise")

    up_dit, up_vae = bench.build_weights(up)
    bench.save()
    print_header(args.steps)
    if "upstream" in bench.rows:
        bench.run_upstream(up, up_dit, up_vae)
    del up_dit, up_vae  # ours runs with only its own models resident
    device.free()
    ours = [r for r in bench.rows if r != "upstream"]
    if ours:
        bench.run_ours(ours)

    results = bench.results
    summary(results, args.steps)
    bench.save()
    failed = [a for a in results["agreement"] if not a["ok"]]
    errors = [r for r in results["rows"] if "error" in r]
    return 1 if failed or errors else 0


def environment(device: Device, up) -> dict:
    gpu = torch.cuda.get_device_name(device.torch) if device.cuda else None
    return dict(python=sys.version.split()[0], torch=torch.__version__, cuda=torch.version.cuda, gpu=gpu,
                xformers=_dist_version("xformers"), diffusers=_dist_version("diffusers"), timm=up.timm,
                rotary_embedding_torch=_dist_version("rotary-embedding-torch"), upstream=up.source,
                upstream_cross_attention=up.xformers, upstream_flash_attention=up.flash_attn,
                host=platform.node())


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def base_row(kind, label, h, w, frames, z0, dit, tokens, args) -> dict:
    t_lat, lat_h, lat_w = z0.shape[2:]
    patch = dit["patch_size"]
    s = math.ceil(lat_h / patch[1]) * math.ceil(lat_w / patch[2])
    flops = denoiser_flops(dit, 2, math.ceil(t_lat / patch[0]), s, tokens)
    return dict(row=kind, label=label, size=f"{h}x{w}", size_name=size_name(h, w), frames=frames,
                latent=[int(t_lat), int(lat_h), int(lat_w)], tokens_per_frame=s, steps=args.steps,
                flops_per_step=flops)


def finish_row(row: dict, args, device: Device):
    if "step_s" in row:
        row["total_s"] = row["denoise_s"] + row.get("decode_s", 0.0)
        row["tflops"] = row["flops_per_step"] / row["step_s"] / 1e12
        if device.cuda:
            row["mfu"] = row["tflops"] / args.peak_tflops
    peaks = [row.get(k) for k in ("peak_denoise_gb", "peak_decode_gb") if row.get(k) is not None]
    row["peak_gb"] = max(peaks) if peaks else None


def print_header(steps: int):
    print(f"{'row':44} {'size':>6} {'s/step':>7} {'denoise s':>9} {'decode s':>8} {'total s':>8} "
          f"{'peak GB':>7} {'TFLOP/s':>7}   (denoise s = s/step x {steps})", flush=True)


def show_row(r: dict):
    if "error" in r:
        print(f"{r['label'][:44]:44} {r['size_name']:>6}  failed: {r['error'][:300]}", flush=True)
        return

    def f(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    print(f"{r['label'][:44]:44} {r['size_name']:>6} {f(r.get('step_s'), '7.3f')} {f(r.get('denoise_s'), '9.1f')} "
          f"{f(r.get('decode_s'), '8.2f')} {f(r.get('total_s'), '8.1f')} {f(r.get('peak_gb'), '7.2f')} "
          f"{f(r.get('tflops'), '7.1f')}   warm-up {', '.join(f'{s:.2f}' for s in r.get('first_steps_s', [])) or '-'} s",
          flush=True)


def summary(results: dict, steps: int):
    rows = [r for r in results["rows"] if "total_s" in r]
    if not rows:
        return
    print(f"\nsummary ({steps} steps; time and peak memory relative to upstream at the same size)")
    base = {r["size"]: r for r in rows if r["row"] == "upstream"}
    for r in rows:
        ref = base.get(r["size"])
        if ref is None or r is ref:
            continue
        speed = ref["total_s"] / r["total_s"]
        mem = (r["peak_gb"] / ref["peak_gb"]) if r.get("peak_gb") and ref.get("peak_gb") else None
        r["speedup_vs_upstream"] = speed
        r["memory_vs_upstream"] = mem
        print(f"  {r['label'][:44]:44} {r['size_name']:>6}: {speed:.2f}x upstream's speed (target >= 2), "
              f"peak memory {'-' if mem is None else f'{mem:.2f}x'} upstream's (target <= 1)")
    failed = [a for a in results["agreement"] if not a["ok"]]
    if results["agreement"]:
        print(f"agreement with upstream: {len(results['agreement']) - len(failed)} of {len(results['agreement'])} "
              f"within tolerance ({results['settings']['tolerance_rel']:g} x max|z_upstream|)")


if __name__ == "__main__":
    sys.exit(main())
