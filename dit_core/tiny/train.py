"""Train the built-in tiny model on procedurally generated sprite clips.

    python -m dit_core.tiny.train --out runs/tiny --steps 1650          # first stage (the defaults), about an hour on 2 cores
    python -m dit_core.tiny.train --out runs/tiny --resume --minutes 140 --steps 2600 --decay-steps 2600  # continue
    python -m dit_core.tiny.train --out runs/tiny --resume --minutes 300 --steps 7756 --decay-steps 9000 --bf16 --t-shift 3
    # on a GPU, starting from a bundle (a fresh optimizer; a new --seed draws clips the earlier stages did not see),
    # the learning rate decayed over a 9-minute budget
    python -m dit_core.tiny.train --out runs/gpu --init runs/tiny/charmotion_tiny.safetensors --device cuda --bf16 \
        --batch-size 192 --workers 15 --lr 3e-4 --warmup 100 --t-shift 3 --minutes 9 --decay-over-budget --seed 5

The codec's PCA basis is fitted first on training clips (seconds). Then
rectified-flow training exactly as the sampler uses the model (Open-Sora 1.2's
objective): ``x_t = (1 - t) x0 + t noise`` with logit-normal ``t``, the
velocity ``x0 - noise`` as target, conditioned frames kept clean and shown as
clean through ``x_mask``, and the loss taken over generated frames only. The
conditioning mix teaches image-to-video (first frame), text-to-video,
in-betweening (first + last frame) and seamless loops (a 17th frame equal to
the first on loopable actions). Captions are decorated with the motion score
the clip was rendered with (``motion score: 10 x amplitude``) and cleaned like
at inference; 10 % are replaced by the null caption for classifier-free
guidance. The text encoder trains jointly; an exponential moving average of
the weights is what gets saved.

The run is seeded and resumable (``train_state.pt`` in ``--out``); it logs the
training loss and a held-out loss (fixed held-out clips, noise and timesteps)
to ``log.jsonl`` and writes the bundle with ``save_tiny`` at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..prompts import decorate_prompt, preprocess_text
from ..sampling.schedule import transform_timesteps
from .bundle import build_tiny, load_tiny, save_tiny
from .codec import PatchPCACodec, SpaceToDepthCodec
from .dataset import example_seed, make_batch, make_example, prefetch
from .evaluate import frames_to_pixels
from .actions import ACTIONS

FPS = 8.0
SIZE = 64
FRAMES = 16

# conditioning mix: (name, probability)
CONDITIONING_MIX = (("first", 0.7), ("none", 0.05), ("first_last", 0.1), ("last", 0.05), ("first_middle", 0.05),
                    ("seamless", 0.1))


def caption(prompt: str, amplitude: float, rng: np.random.Generator, motion_scale: float) -> str:
    motion = round(float(amplitude) * motion_scale, 1) if rng.random() < 0.85 else None
    aesthetic = round(float(rng.uniform(4.0, 7.0)), 1) if rng.random() < 0.3 else None
    camera = "static" if rng.random() < 0.05 else None
    return preprocess_text(decorate_prompt(prompt, aesthetic=aesthetic, motion=motion, camera=camera))


def condition_masks(kinds: list[str], frames: int) -> torch.Tensor:
    """``[B, T]`` True where the frame is a clean condition."""
    mask = torch.zeros(len(kinds), frames, dtype=torch.bool)
    for i, kind in enumerate(kinds):
        if kind in ("first", "first_last", "first_middle", "seamless"):
            mask[i, 0] = True
        if kind in ("first_last", "last", "seamless"):
            mask[i, -1] = True
        if kind == "first_middle":
            mask[i, frames // 2] = True
    return mask


def seamless_batch(seed: int, index: int, batch_size: int) -> dict:
    """Loopable clips with a 17th frame equal to the first (the loop closes there)."""
    loopable = sorted(name for name, action in ACTIONS.items() if action.loopable)
    rng = np.random.default_rng([seed, index, 0x100F])
    examples = [
        make_example(int(rng.integers(2**31)), "train", FRAMES, SIZE, action=loopable[int(rng.integers(len(loopable)))])
        for _ in range(batch_size)
    ]
    frames = np.stack([np.concatenate([e["frames"], e["frames"][:1]]) for e in examples])
    return {"frames": frames, "amplitude": np.array([e["amplitude"] for e in examples]), "prompt": [e["prompt"] for e in examples]}


def training_batch(job: tuple) -> dict:
    """The batch a training step uses: ``job = (seed, step, batch_size, seamless)``; it depends on nothing else."""
    seed, step, batch_size, seamless = job
    batch = seamless_batch(seed, step, batch_size) if seamless else make_batch(seed, step, batch_size, "train", FRAMES, SIZE)
    return {**batch, "seamless": seamless}


def fit_codec(seed: int, components: int, clips: int = 160, whiten: bool = False) -> PatchPCACodec:
    """The PCA codec's basis, fitted on training clips (every third frame) of the same seeded stream."""
    frames = np.concatenate([make_example(example_seed(seed, 2**31, i), "train", FRAMES, SIZE)["frames"][::3]
                             for i in range(clips)])
    return PatchPCACodec.fit(frames_to_pixels(frames[None])[0][None], components, whiten=whiten)


def motion_map(x0: torch.Tensor) -> torch.Tensor:
    """Where a clip moves: ``[B, T, h, w]`` in [0, 1], the latent's distance from frame 0 at every token, divided
    by the clip's largest such distance (all zeros for a still clip)."""
    moved = (x0 - x0[:, :, :1]).abs().mean(dim=1)
    return moved / moved.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)


def sample_timesteps(n: int, gen: torch.Generator, *, scale: float = 1.0, shift: float = 1.0,
                     uniform: float = 0.0) -> torch.Tensor:
    """Training timesteps in [0, 1000]: logit-normal (``sigmoid(scale * N(0, 1))``), shifted toward high noise
    with Open-Sora's transform ``t' = s t / (1 + (s - 1) t)``, a share ``uniform`` drawn uniformly instead."""
    t = torch.sigmoid(torch.randn(n, generator=gen) * scale) * 1000.0
    if shift != 1.0:
        t = transform_timesteps(t, torch.tensor(float(shift)))
    flat = torch.rand(n, generator=gen) < uniform
    return torch.where(flat, torch.rand(n, generator=gen) * 1000.0, t)


def heldout_set(count: int, seed: int = 1234) -> dict:
    examples = [make_example(seed + i, "heldout", FRAMES, SIZE) for i in range(count)]
    return {
        "frames": np.stack([e["frames"] for e in examples]),
        "amplitude": np.array([e["amplitude"] for e in examples]),
        "prompt": [e["prompt"] for e in examples],
    }


class Trainer:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        self.device = torch.device(args.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here; train with --device cpu")
        if args.init:
            if args.config:
                raise SystemExit("--init takes the model's config from the bundle; drop --config")
            source = load_tiny(args.init)  # its codec too: the weights only fit that codec
            self.bundle = build_tiny(source.config, seed=args.seed, codec=source.codec)
            self.bundle.model.load_state_dict(source.model.state_dict())
            self.bundle.text_encoder.load_state_dict(source.text_encoder.state_dict())
            self.init_info = source.info
        else:
            self.init_info = None
            config = json.loads(args.config) if args.config else None
            codec = (fit_codec(args.seed, args.codec_components, whiten=args.whiten) if args.codec_components
                     else SpaceToDepthCodec(factor=4))
            self.bundle = build_tiny(config, seed=args.seed, codec=codec)
        self.bundle.to(device=self.device)
        self.model, self.text = self.bundle.model.train(), self.bundle.text_encoder.train()
        if args.bf16 and self.device.type == "cpu":  # CPU flash attention's bfloat16 backward is slow here
            self.model.set_attention_backend("math")
        self.params = [p for p in list(self.model.parameters()) + list(self.text.parameters()) if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01,
                                     fused=self.device.type == "cuda" or None)  # one kernel per step on a GPU
        self.ema = [p.detach().clone() for p in self.params]
        self.step = 0
        self.seconds = 0.0
        self.rng = np.random.default_rng(args.seed)
        self.gen = torch.Generator().manual_seed(args.seed)
        # the noise is the bulk of the random numbers (millions per step): on a GPU it is drawn there
        self.noise_gen = (self.gen if self.device.type == "cpu"
                          else torch.Generator(device=self.device).manual_seed(args.seed))
        self.motion_scale = float(self.bundle.config["sampling"]["motion_scale"])
        self.heldout = heldout_set(args.heldout_clips)
        self.heldout_gen = torch.Generator().manual_seed(99)

    # -- state ----------------------------------------------------------------
    def state_path(self) -> Path:
        return self.out / "train_state.pt"

    def save_state(self):
        state = {
            "model": self.model.state_dict(), "text": self.text.state_dict(), "opt": self.opt.state_dict(),
            "ema": self.ema, "step": self.step, "seconds": self.seconds,
            "rng": json.dumps(self.rng.bit_generator.state), "gen": self.gen.get_state(),
        }
        if self.noise_gen is not self.gen:
            state["noise_gen"] = self.noise_gen.get_state()
        tmp = self.state_path().with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path())

    def load_state(self):
        state = torch.load(self.state_path(), map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.text.load_state_dict(state["text"])
        self.opt.load_state_dict(state["opt"])
        for e, s in zip(self.ema, state["ema"]):
            e.copy_(s)
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.gen.set_state(state["gen"])
        if self.noise_gen is not self.gen:
            if "noise_gen" in state:
                self.noise_gen.set_state(state["noise_gen"])
            else:  # a CPU run continued on a GPU: the noise comes from a new stream from here on
                self.noise_gen.manual_seed(self.args.seed * 1_000_003 + self.step)
                print(f"note: {self.state_path()} was saved by a CPU run; the noise on {self.device} is a new stream")

    # -- one step ---------------------------------------------------------------
    def lr_at(self, step: int, seconds: float = 0.0) -> float:
        """Linear warm-up over ``--warmup`` steps, then a cosine decay to 10 % of ``--lr`` over ``--decay-steps``
        steps or, with ``--decay-over-budget``, over the ``--minutes`` budget (``seconds`` trained so far)."""
        warm = self.args.warmup
        if step < warm:
            return self.args.lr * (step + 1) / warm
        if self.args.decay_over_budget:
            progress = min(1.0, seconds / (self.args.minutes * 60.0))
        else:
            progress = min(1.0, (step - warm) / max(1, self.args.decay_steps - warm))
        return self.args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def loss(self, batch: dict, kinds: list[str], t: torch.Tensor, noise: torch.Tensor, drop: torch.Tensor,
             motion_weight: float = 0.0) -> torch.Tensor:
        device = self.device
        any_drop = bool(drop.any())  # decided before the move: reading a GPU tensor would wait for the GPU
        t, noise, drop = t.to(device), noise.to(device), drop.to(device)
        x0 = self.bundle.codec.encode(frames_to_pixels(batch["frames"], device))
        frames = x0.shape[2]
        clean = condition_masks(kinds, frames).to(device)
        prompts = [caption(p, a, self.rng, self.motion_scale) for p, a in zip(batch["prompt"], batch["amplitude"])]
        text = self.text(prompts)
        y = text.y
        if any_drop:
            null = self.model.y_embedder.y_embedding[: y.shape[2]]
            y = torch.where(drop[:, None, None, None], null[None, None].expand_as(y), y)
        w = (t / 1000.0).view(-1, 1, 1, 1, 1)
        xt = (1 - w) * x0 + w * noise
        xt = torch.where(clean[:, None, :, None, None], x0, xt)
        n = x0.shape[0]
        pred = self.model(
            xt, t, y, mask=text.mask, x_mask=~clean,
            fps=torch.full((n,), FPS, device=device), height=torch.full((n,), float(SIZE), device=device),
            width=torch.full((n,), float(SIZE), device=device),
        )
        err = (pred - (x0 - noise)).pow(2).mean(dim=1)  # [B, T, h, w]
        weight = (~clean).float()[:, :, None, None].expand_as(err)
        if motion_weight:
            weight = weight * (1.0 + motion_weight * motion_map(x0))
        return (err * weight).sum() / weight.sum()

    def sample_kinds(self, n: int, seamless: bool) -> list[str]:
        if seamless:
            return ["seamless"] * n
        names, probs = zip(*[(k, p) for k, p in CONDITIONING_MIX if k != "seamless"])
        probs = np.asarray(probs) / sum(probs)
        return [names[i] for i in self.rng.choice(len(names), size=n, p=probs)]

    def train_step(self, batch: dict) -> torch.Tensor:
        """One optimizer step; returns the loss as a tensor (reading it waits for the device, so the caller
        reads losses only when it logs and a GPU step can overlap with preparing the next one)."""
        n = len(batch["prompt"])
        kinds = self.sample_kinds(n, batch["seamless"])
        t = sample_timesteps(n, self.gen, scale=self.args.t_scale, shift=self.args.t_shift, uniform=self.args.t_uniform)
        noise_shape = (n, self.bundle.codec.latent_channels, batch["frames"].shape[1], SIZE // 4, SIZE // 4)
        noise = torch.randn(noise_shape, generator=self.noise_gen, device=self.noise_gen.device)
        drop = torch.rand(n, generator=self.gen) < 0.1
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step, self.seconds)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
            loss = self.loss(batch, kinds, t, noise, drop, self.args.motion_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        decay = min(self.args.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1 - decay)
        self.step += 1
        return loss.detach()

    @torch.no_grad()
    def heldout_loss(self) -> float:
        saved = [p.detach().clone() for p in self.params]
        self.swap_in(self.ema)
        self.model.eval(), self.text.eval()
        gen = torch.Generator().manual_seed(99)
        rng_state = self.rng.bit_generator.state
        self.rng = np.random.default_rng(7)
        total = 0.0
        n = len(self.heldout["prompt"])
        for t_value in (250.0, 500.0, 750.0):
            noise = torch.randn((n, self.bundle.codec.latent_channels, FRAMES, SIZE // 4, SIZE // 4), generator=gen)
            total += float(self.loss(self.heldout, ["first"] * n, torch.full((n,), t_value), noise, torch.zeros(n, dtype=torch.bool)))
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = rng_state
        self.swap_in(saved)
        self.model.train(), self.text.train()
        return total / 3

    def swap_in(self, tensors):
        with torch.no_grad():
            for p, v in zip(self.params, tensors):
                p.copy_(v)

    # -- run ------------------------------------------------------------------
    def batch_jobs(self):
        """Jobs for :func:`training_batch` from the current step on; every batch serves ``--repeat`` steps."""
        every = self.args.seamless_every
        index = self.step // self.args.repeat
        while True:
            yield self.args.seed, index, self.args.batch_size, every > 0 and index % every == every - 1
            index += 1

    def run(self):
        args = self.args
        if args.resume and self.state_path().exists():
            self.load_state()
            print(f"resumed at step {self.step} ({self.seconds / 60:.1f} min trained)")
        budget = args.minutes * 60.0
        log = (self.out / "log.jsonl").open("a")
        batches = prefetch(training_batch, self.batch_jobs(), args.workers)
        batch = None
        recent = []
        last_save = time.time()
        while self.seconds < budget and (args.steps is None or self.step < args.steps):
            start = time.perf_counter()
            if batch is None or self.step % args.repeat == 0:
                batch = next(batches)
            recent.append(self.train_step(batch))
            self.seconds += time.perf_counter() - start
            if self.step % args.log_every == 0:
                entry = {"step": self.step, "minutes": round(self.seconds / 60, 2),
                         "loss": round(float(torch.stack(recent).float().mean()), 5),
                         "lr": self.lr_at(self.step, self.seconds)}
                recent = []
                if self.step % args.eval_every == 0:
                    entry["heldout_loss"] = round(self.heldout_loss(), 5)
                print(json.dumps(entry), flush=True)
                log.write(json.dumps(entry) + "\n")
                log.flush()
            if time.time() - last_save > args.save_minutes * 60:
                self.save_state()
                last_save = time.time()
        self.save_state()
        final = {"step": self.step, "minutes": round(self.seconds / 60, 2), "heldout_loss": round(self.heldout_loss(), 5)}
        print(json.dumps(final), flush=True)
        log.write(json.dumps(final) + "\n")
        self.swap_in(self.ema)
        info = {"steps": self.step, "train_minutes": final["minutes"], "batch_size": args.batch_size, "lr": args.lr,
                "heldout_loss": final["heldout_loss"], "seed": args.seed, "device": self.device.type}
        if args.repeat > 1:
            info["repeat"] = args.repeat
        if args.motion_weight:
            info["motion_weight"] = args.motion_weight
        if args.decay_over_budget:
            info["decay_minutes"] = args.minutes
        if self.init_info is not None:
            info["init"] = self.init_info
        path = save_tiny(self.bundle, self.out / "charmotion_tiny.safetensors", info=info)
        print(f"wrote {path}")
        return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="run folder (checkpoints, log, final bundle)")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time budget (wall clock spent in steps)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=8e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--decay-steps", type=int, default=1650, help="cosine decay length (to 10 %% of --lr)")
    parser.add_argument("--decay-over-budget", action="store_true",
                        help="decay over the --minutes budget instead of --decay-steps (when the step time is not "
                             "known beforehand, e.g. a first run on a new GPU)")
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--seamless-every", type=int, default=8, help="every N-th batch trains seamless loops")
    parser.add_argument("--t-scale", type=float, default=1.0, help="scale of the logit-normal timestep distribution")
    parser.add_argument("--t-uniform", type=float, default=0.2,
                        help="share of timesteps drawn uniformly instead (more low-noise steps for crisp pixels)")
    parser.add_argument("--t-shift", type=float, default=1.0,
                        help="shift the logit-normal timesteps toward high noise (t' = s t / (1 + (s - 1) t)); "
                             "motion is decided at high noise")
    parser.add_argument("--motion-weight", type=float, default=0.0,
                        help="weigh the loss up to 1 + this where the clip differs from its first frame "
                             "(the moving part of a sprite is a small share of the pixels)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast (about 1.4x faster on CPUs with AVX-512 BF16; weights stay float32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="data worker processes")
    parser.add_argument("--repeat", type=int, default=1,
                        help="train on every batch this many steps (fresh noise, timesteps, captions each time); "
                             "keeps a fast GPU busy when drawing clips is the bottleneck")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--init", default=None,
                        help="start from the weights (and codec) of this bundle file, e.g. the built-in model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--heldout-clips", type=int, default=12)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--save-minutes", type=float, default=5.0)
    parser.add_argument("--codec-components", type=int, default=24,
                        help="PCA codec channels per 4x4 block (0 = the lossless 48-channel space-to-depth codec)")
    parser.add_argument("--whiten", action="store_true", help="scale every codec channel to unit variance")
    parser.add_argument("--config", default=None, help="JSON overrides of the bundle config (model sizes...)")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    Trainer(args).run()


if __name__ == "__main__":
    main()
