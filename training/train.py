"""Train the built-in model: an STDiT3 that generates motion fields of procedurally drawn sprite clips.

    python -m training train --out runs/builtin            # the shipped recipe: 60 minutes on 2 CPU cores
    python -m training train --out runs/builtin --resume   # continue a stopped run
    python -m training train --out runs/fine --init runs/builtin/charmotion_builtin.safetensors \
        --config '{"field": {"grid": 32, "frame_pixels": 128}}'   # go on from a file's weights, with a finer field

Rectified flow exactly as the sampler uses the model (Open-Sora 1.2's
objective): ``x_t = (1 - t) x0 + t noise`` with logit-normal ``t``, the
velocity ``x0 - noise`` as target, conditioned frames kept clean and shown as
clean through ``x_mask``, the loss over generated frames only. ``x0`` are a
clip's motion-field latents (:mod:`.fields`); the reference's appearance is
the model's context. The conditioning mix teaches animating a reference
(frame 0 = the identity), in-betweening to a pose (first + last frame),
seamless loops (a 17th frame equal to the first), a reference pinned
at the last frame and continuing a loop (a loopable clip from a random
phase, its first frames given). Captions carry the motion score the clip was drawn with
(``motion score: 10 x amplitude``) most of the time; 10 % are replaced by the
null caption for classifier-free guidance. The text encoder trains jointly;
an exponential moving average of the weights is saved, with the words of the
training prompts per action (:func:`.phrases.action_words`).

The run is seeded and resumable (``train_state.pt`` in ``--out``); it logs the
training loss and a held-out loss (fixed held-out clips, noise and
timesteps) to ``log.jsonl`` and writes the model file at the end.

``--init`` starts from a model file's weights instead of fresh ones. Its
networks must have the run's sizes; its motion field may differ. A field of
``grid`` 32 over ``frame_pixels`` 128 keeps every tensor of a grid-16 model
over 64 pixels (48 latent values and 64 appearance channels a token), so a
model trained on the cheap coarse field goes on at the finer one (64 tokens
a frame instead of 16).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..dit_core.builtin.codec import FieldConfig, MotionFieldCodec
from ..dit_core.builtin.model import BuiltinModel, build_builtin, load_builtin, merged_config, save_builtin, unknown_settings
from ..dit_core.cli_checks import check_device
from ..dit_core.errors import CharMotionError
from ..dit_core.prompts import decorate_prompt, preprocess_text
from ..dit_core.sampling.schedule import transform_timesteps
from .actions import ACTIONS
from .dataset import example_seed, iter_batches, make_example, prefetch
from .phrases import action_words, make_prompt

FRAMES = 16
SIZE = 64

#: conditioning mix: (name, probability); seamless clips come in their own batches (one more frame).
#: "continue" (loopable clips only; others fall back to "first") teaches what a later loop does: the clip
#: starts at a random phase and its first ``loop_condition_frames`` frames are given, as the end of the
#: previous loop is given to the next.
CONDITIONING_MIX = (("first", 0.7), ("first_last", 0.1), ("first_middle", 0.05), ("last", 0.05), ("continue", 0.1))


def caption(prompt: str, amplitude: float, rng: np.random.Generator, motion_scale: float) -> str:
    motion = round(float(amplitude) * motion_scale, 1) if rng.random() < 0.85 else None
    aesthetic = round(float(rng.uniform(4.0, 7.0)), 1) if rng.random() < 0.1 else None
    return preprocess_text(decorate_prompt(prompt, aesthetic=aesthetic, motion=motion))


def condition_masks(kinds: list[str], frames: int, carried: int) -> torch.Tensor:
    """``[B, T]`` True where the frame is a clean condition (``carried``: the frames a "continue" clip is given)."""
    mask = torch.zeros(len(kinds), frames, dtype=torch.bool)
    for i, kind in enumerate(kinds):
        if kind == "continue":
            mask[i, :carried] = True
        if kind in ("first", "first_last", "first_middle", "seamless"):
            mask[i, 0] = True
        if kind in ("first_last", "last", "seamless"):
            mask[i, -1] = True
        if kind == "first_middle":
            mask[i, frames // 2] = True
    return mask


def seamless_batch(seed: int, index: int, batch_size: int, field_config: FieldConfig) -> dict:
    """Loopable clips with a 17th frame equal to the first (the loop closes there)."""
    codec = MotionFieldCodec(field_config)
    loopable = sorted(name for name, action in ACTIONS.items() if action.loopable)
    rng = np.random.default_rng([seed, index, 0x100F])
    examples = [make_example(int(rng.integers(2**31)), "train", FRAMES, SIZE,
                             action=loopable[int(rng.integers(len(loopable)))], codec=codec)
                for _ in range(batch_size)]
    latents = np.stack([np.concatenate([e["latents"], e["latents"][:, :1]], axis=1) for e in examples])
    return {"latents": latents, "appearance": np.stack([e["appearance"] for e in examples]),
            "amplitude": np.array([e["amplitude"] for e in examples]), "prompt": [e["prompt"] for e in examples]}


class ClipStore:
    """Training clips drawn once (in worker processes, all cores busy) and then sampled from: training steps
    then run at the model's own speed instead of waiting for clips to be drawn. Prompts are phrased anew every
    time a clip is used."""

    CHUNK = 32  # clips per worker job

    def __init__(self, seed: int, count: int, field_config: FieldConfig, workers: int = 0):
        jobs = ((seed, i, self.CHUNK, field_config) for i in range(math.ceil(count / self.CHUNK)))
        chunks = list(prefetch(_store_chunk, jobs, workers))
        self.latents = np.concatenate([c["latents"] for c in chunks])[:count]
        self.appearance = np.concatenate([c["appearance"] for c in chunks])[:count]
        self.action = sum((c["action"] for c in chunks), [])[:count]
        self.noun = sum((c["noun"] for c in chunks), [])[:count]
        self.amplitude = np.concatenate([c["amplitude"] for c in chunks])[:count]
        self.loopable = np.flatnonzero([ACTIONS[a].loopable for a in self.action])

    def __len__(self) -> int:
        return len(self.action)

    def batch(self, rng: np.random.Generator, batch_size: int, seamless: bool) -> dict:
        pool = self.loopable if seamless else np.arange(len(self))
        pick = rng.choice(pool, size=batch_size, replace=False)
        latents = self.latents[pick].astype(np.float32)
        if seamless:  # a 17th frame equal to the first: the loop closes there
            latents = np.concatenate([latents, latents[:, :, :1]], axis=2)
        return {"latents": latents, "appearance": self.appearance[pick].astype(np.float32),
                "amplitude": self.amplitude[pick], "loopable": np.isin(pick, self.loopable), "seamless": seamless,
                "action": [self.action[i] for i in pick],
                "prompt": [make_prompt(rng, self.action[i], self.noun[i], False) for i in pick]}


def _store_chunk(job: tuple) -> dict:
    seed, index, count, field_config = job
    codec = MotionFieldCodec(field_config)
    examples = [make_example(example_seed(seed, index, i), "train", FRAMES, SIZE, codec=codec) for i in range(count)]
    return {"latents": np.stack([e["latents"] for e in examples]).astype(np.float16),
            "appearance": np.stack([e["appearance"] for e in examples]).astype(np.float16),
            "action": [e["action"] for e in examples], "noun": [e["character"]["noun"] for e in examples],
            "amplitude": np.array([e["amplitude"] for e in examples], dtype=np.float32)}


def sample_timesteps(n: int, gen: torch.Generator, *, shift: float = 1.0, uniform: float = 0.0) -> torch.Tensor:
    """Training timesteps in [0, 1000]: logit-normal, shifted toward high noise with Open-Sora's transform
    ``t' = s t / (1 + (s - 1) t)``, a share ``uniform`` drawn uniformly instead."""
    t = torch.sigmoid(torch.randn(n, generator=gen)) * 1000.0
    if shift != 1.0:
        t = transform_timesteps(t, torch.tensor(float(shift)))
    flat = torch.rand(n, generator=gen) < uniform
    return torch.where(flat, torch.rand(n, generator=gen) * 1000.0, t)


def heldout_set(count: int, field_config: FieldConfig, seed: int = 1234) -> dict:
    codec = MotionFieldCodec(field_config)
    examples = [make_example(seed + i, "heldout", FRAMES, SIZE, codec=codec) for i in range(count)]
    return {"latents": np.stack([e["latents"] for e in examples]),
            "appearance": np.stack([e["appearance"] for e in examples]),
            "amplitude": np.array([e["amplitude"] for e in examples]), "prompt": [e["prompt"] for e in examples]}


def training_batch(job: tuple) -> dict:
    """The batch a training step uses: ``job = (seed, index, batch_size, field_config, seamless)``."""
    seed, index, batch_size, field_config, seamless = job
    if seamless:
        return {**seamless_batch(seed, index, batch_size, field_config), "seamless": True}
    batch = next(iter_batches(seed, batch_size, field_config, start=index))
    return {**batch, "seamless": False}


def bf16_is_native(device: torch.device, cpuinfo: str | None = None) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 or
    AMX (``cpuinfo``: the text of /proc/cpuinfo, read when not given). Elsewhere a CPU emulates bfloat16 and
    autocast makes training tens of times slower (measured: 40x on an AVX2 CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return bool({"avx512_bf16", "amx_bf16"} & set(cpuinfo.split()))


class Trainer:
    def __init__(self, args):
        self.args = args
        torch.manual_seed(args.seed)
        try:
            check_device(args.device)
        except CharMotionError as err:
            raise SystemExit(str(err)) from None
        self.device = torch.device(args.device)
        if args.bf16 is None:
            args.bf16 = bf16_is_native(self.device)
        config = json.loads(args.config) if args.config else {}
        self.out = Path(args.out)
        resumed = self.resumed_state(config) if args.resume else None
        if resumed is not None:  # the run goes on with the settings and starting point it began with
            config = resumed.get("config", config)
        config["actions"] = action_words()
        start = initial_model(args.init, config) if args.init and resumed is None else None
        try:
            self.bundle = build_builtin(config, seed=args.seed)
        except (ValueError, TypeError, RuntimeError, ZeroDivisionError) as err:
            raise SystemExit(f"--config: these settings do not make a model ({err})") from None
        self.config = {k: v for k, v in config.items() if k != "actions"}
        self.out.mkdir(parents=True, exist_ok=True)
        if start is not None:
            self.bundle.model.load_state_dict(start.model.state_dict())
            self.bundle.text_encoder.load_state_dict(start.text_encoder.state_dict())
        self.init_info = None if start is None else {"file": Path(args.init).name, "grid": start.codec.config.grid,
                                                      **{k: start.info[k] for k in ("steps", "train_minutes") if k in start.info}}
        if resumed is not None:
            self.init_info = resumed.get("init")
        self.bundle = self.bundle.to(device=self.device)
        self.field_config = self.bundle.codec.config
        self.model, self.text = self.bundle.model.train(), self.bundle.text_encoder.train()
        if args.bf16 and self.device.type == "cpu":  # the CPU's fused attention is slow in bfloat16 backward
            self.model.set_attention_backend("math")

        self.params = [p for p in list(self.model.parameters()) + list(self.text.parameters()) if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01,
                                     fused=self.device.type == "cuda" or None)
        self.ema = [p.detach().clone() for p in self.params]
        self.step = 0
        self.seconds = 0.0
        self.rng = np.random.default_rng(args.seed)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.motion_scale = float(self.bundle.config["sampling"]["motion_scale"])
        self.carried = int(self.bundle.config["sampling"]["loop_condition_frames"])
        self.frame_pixels = float(self.field_config.frame_pixels)
        self.heldout = heldout_set(args.heldout_clips, self.field_config)
        self.resumed = resumed is not None
        if resumed is not None:
            self.load_state(resumed)

    # -- state ----------------------------------------------------------------
    def state_path(self) -> Path:
        return self.out / "train_state.pt"

    def resumed_state(self, config: dict) -> dict:
        """The saved state ``--resume`` goes on from, refused with one line when there is none or when ``--config``
        asks for other settings than the run began with."""
        if not self.state_path().exists():
            raise SystemExit(f"--resume: {self.out} holds no train_state.pt to go on from; leave out --resume to "
                             "start a new run there, or give the run's folder")
        state = torch.load(self.state_path(), map_location="cpu", weights_only=True)
        began = state.get("config")
        if began is not None and config and config != began:
            raise SystemExit(f"--resume: this run began with --config '{json.dumps(began)}'; leave out --config (the "
                             "run keeps its settings) or start a new run for other ones")
        return state

    def save_state(self):
        state = {  # "dit", not "model": a model file loader would take a state dict under "model" for a denoiser
            "dit": self.model.state_dict(), "text": self.text.state_dict(), "opt": self.opt.state_dict(),
            "config": self.config, "init": self.init_info,
            "ema": self.ema, "step": self.step, "seconds": self.seconds,
            "rng": json.dumps(self.rng.bit_generator.state), "gen": self.gen.get_state(),
        }
        tmp = self.state_path().with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path())

    def load_state(self, state: dict):
        self.model.load_state_dict(state["dit"] if "dit" in state else state["model"])
        self.text.load_state_dict(state["text"])
        self.opt.load_state_dict(state["opt"])
        for e, s in zip(self.ema, state["ema"]):
            e.copy_(s)
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.gen.set_state(state["gen"])

    # -- one step -------------------------------------------------------------
    def lr_at(self, step: int, seconds: float = 0.0) -> float:
        """Linear warm-up over ``--warmup`` steps, then a cosine decay to 10 % of ``--lr`` at ``--steps`` or at
        ``--minutes`` (``seconds`` trained), whichever comes first: on a CPU too slow to reach ``--steps`` inside
        the budget the rate still reaches its floor when the budget ends."""
        warm = self.args.warmup
        if step < warm:
            return self.args.lr * (step + 1) / warm
        progress = min(1.0, max((step - warm) / max(1, self.args.steps - warm), seconds / (self.args.minutes * 60.0)))
        return self.args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def loss(self, batch: dict, kinds: list[str], t: torch.Tensor, noise: torch.Tensor,
             drop: torch.Tensor) -> torch.Tensor:
        device = self.device
        x0 = torch.from_numpy(batch["latents"]).to(device)
        context = torch.from_numpy(batch["appearance"]).to(device)
        t, noise, drop = t.to(device), noise.to(device), drop.to(device)
        frames = x0.shape[2]
        clean = condition_masks(kinds, frames, self.carried).to(device)
        prompts = [caption(p, a, self.rng, self.motion_scale) for p, a in zip(batch["prompt"], batch["amplitude"])]
        text = self.text(prompts)
        pad = self.model.config.model_max_length - text.y.shape[2]  # every caption in its full slots, as sampled
        y = torch.nn.functional.pad(text.y, (0, 0, 0, pad))
        text_mask = torch.nn.functional.pad(text.mask, (0, pad))
        if bool(drop.any()):
            null = self.model.y_embedder.y_embedding[: y.shape[2]]
            y = torch.where(drop[:, None, None, None], null[None, None].expand_as(y), y)
        w = (t / 1000.0).view(-1, 1, 1, 1, 1)
        xt = torch.where(clean[:, None, :, None, None], x0, (1 - w) * x0 + w * noise)
        n = x0.shape[0]
        size = torch.full((n,), self.frame_pixels, device=device)
        pred = self.model(xt, t, y, mask=text_mask, x_mask=~clean, fps=torch.full((n,), 8.0, device=device),
                          height=size, width=size, context=context)
        err = (pred - (x0 - noise)).pow(2).mean(dim=1)  # [B, T, h, w]
        weight = (~clean).float()[:, :, None, None].expand_as(err)
        return (err * weight).sum() / weight.sum()

    def sample_kinds(self, n: int, seamless: bool) -> list[str]:
        if seamless:
            return ["seamless"] * n
        names, probs = zip(*CONDITIONING_MIX)
        return [names[i] for i in self.rng.choice(len(names), size=n, p=np.asarray(probs) / sum(probs))]

    def continue_kinds(self, batch: dict, kinds: list[str]) -> tuple[dict, list[str]]:
        """Start every "continue" clip at a random phase (its frames rolled: a loopable clip repeats);
        a clip that does not loop is trained as "first" instead."""
        kinds = [k if k != "continue" or batch["loopable"][i] else "first" for i, k in enumerate(kinds)]
        if "continue" not in kinds:
            return batch, kinds
        latents = batch["latents"].copy()
        for i in (i for i, k in enumerate(kinds) if k == "continue"):
            latents[i] = np.roll(latents[i], -int(self.rng.integers(1, latents.shape[2])), axis=1)
        return {**batch, "latents": latents}, kinds

    def train_step(self, batch: dict) -> torch.Tensor:
        n = len(batch["prompt"])
        batch, kinds = self.continue_kinds(batch, self.sample_kinds(n, batch["seamless"]))
        t = sample_timesteps(n, self.gen, shift=self.args.t_shift, uniform=self.args.t_uniform)
        noise = torch.randn(batch["latents"].shape, generator=self.gen)
        drop = torch.rand(n, generator=self.gen) < 0.1
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step, self.seconds)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
            loss = self.loss(batch, kinds, t, noise, drop)
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
        total, n = 0.0, len(self.heldout["prompt"])
        try:
            for t_value in (250.0, 500.0, 750.0):
                noise = torch.randn(self.heldout["latents"].shape, generator=gen)
                total += float(self.loss(self.heldout, ["first"] * n, torch.full((n,), t_value), noise,
                                         torch.zeros(n, dtype=torch.bool)))
        finally:  # the trained weights and the run's random state come back whatever happens
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
            yield self.args.seed, index, self.args.batch_size, self.field_config, every > 0 and index % every == every - 1
            index += 1

    def stored_batches(self, store: ClipStore):
        every = self.args.seamless_every
        while True:
            index = self.step // self.args.repeat
            yield store.batch(self.rng, self.args.batch_size, every > 0 and index % every == every - 1)

    def run(self):
        args = self.args
        if self.resumed:
            print(f"resumed at step {self.step} ({self.seconds / 60:.1f} min trained)")
        budget = args.minutes * 60.0
        log = (self.out / "log.jsonl").open("a")
        if args.clips:
            start = time.perf_counter()
            store = ClipStore(args.seed, args.clips, self.field_config, args.workers)
            drawn = time.perf_counter() - start
            if self.step == 0:
                self.seconds += drawn  # drawing the clips is part of the recipe's time
            print(json.dumps({"clips": len(store), "draw_minutes": round(drawn / 60, 2)}), flush=True)
            batches = self.stored_batches(store)
        else:
            batches = prefetch(training_batch, self.batch_jobs(), args.workers)
        if args.clips and len(store.loopable) < args.batch_size:
            raise SystemExit(f"--clips {args.clips} draws {len(store.loopable)} clips of looping actions, fewer than a "
                             f"batch of seamless loops needs (--batch-size {args.batch_size}): draw more clips")
        stop = threading.Event()  # Ctrl-C asks; the run stops between whole steps, so what is saved is one state
        main = threading.current_thread() is threading.main_thread()  # only there can a signal be caught
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if main else None
        try:
            self.train_until(budget, batches, log, stop)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        self.save_state()
        if stop.is_set():
            raise SystemExit(f"stopped at step {self.step}: the state is saved in {self.state_path()}; go on with "
                             "the same command and --resume")
        final = {"step": self.step, "minutes": round(self.seconds / 60, 2), "heldout_loss": round(self.heldout_loss(), 5)}
        print(json.dumps(final), flush=True)
        log.write(json.dumps(final) + "\n")
        self.swap_in(self.ema)
        info = {"steps": self.step, "train_minutes": final["minutes"], "batch_size": args.batch_size, "lr": args.lr,
                "clips": args.clips, "heldout_loss": final["heldout_loss"], "seed": args.seed,
                "device": self.device.type, "bf16": bool(args.bf16)}
        if self.init_info is not None:
            info["init"] = self.init_info  # the file it went on from (its steps and minutes come on top of these)
        path = save_builtin(self.bundle, self.out / "charmotion_builtin.safetensors", info=info)
        print(f"wrote {path}")
        return path

    def train_until(self, budget: float, batches, log, stop: threading.Event) -> None:
        """Steps until ``budget`` seconds of training, ``--steps`` or ``stop``, logging and saving the state on the
        way."""
        args = self.args
        batch, recent, last_save = None, [], time.time()
        while self.seconds < budget and self.step < args.steps and not stop.is_set():
            start = time.perf_counter()
            if batch is None or self.step % args.repeat == 0:
                batch = next(batches)
            recent.append(self.train_step(batch))
            self.seconds += time.perf_counter() - start
            if self.step % args.log_every == 0:
                entry = {"step": self.step, "minutes": round(self.seconds / 60, 2),
                         "loss": round(float(torch.stack(recent).float().mean()), 5), "lr": self.lr_at(self.step, self.seconds)}
                recent = []
                if self.step % args.eval_every == 0:
                    entry["heldout_loss"] = round(self.heldout_loss(), 5)
                print(json.dumps(entry), flush=True)
                log.write(json.dumps(entry) + "\n")
                log.flush()
            if time.time() - last_save > args.save_minutes * 60:
                self.save_state()
                last_save = time.time()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="run folder (checkpoints, log, final model file)")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time budget (wall clock spent in steps)")
    parser.add_argument("--steps", type=int, default=6600,
                        help="stop after this many steps; the learning rate decays to them (or to --minutes, whichever "
                             "comes first)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--seamless-every", type=int, default=8, help="every N-th batch trains seamless loops")
    parser.add_argument("--t-uniform", type=float, default=0.2, help="share of timesteps drawn uniformly")
    parser.add_argument("--t-shift", type=float, default=2.0,
                        help="shift the timesteps toward high noise, where a clip's motion is decided")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bfloat16 autocast (weights stay float32; about 1.7x faster on CPUs with AVX-512 BF16, "
                             "far slower on CPUs without; default: where the device computes it natively)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="worker processes that draw clips")
    parser.add_argument("--clips", type=int, default=6000,
                        help="draw this many training clips first and train on them (prompts phrased anew each "
                             "time); 0 = draw fresh clips for every batch while training")
    parser.add_argument("--repeat", type=int, default=1,
                        help="train on every batch this many steps (fresh noise, timesteps, captions each time)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--heldout-clips", type=int, default=16)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--save-minutes", type=float, default=5.0)
    parser.add_argument("--config", default=None, help="JSON overrides of the model config (sizes, sampling...)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", default=None,
                        help="start from this model file's weights (same network sizes; the field may differ, e.g. "
                             '--config \'{"field": {"grid": 32, "frame_pixels": 128}}\' from a grid-16 file)')
    return parser


def initial_model(path: str, config: dict) -> BuiltinModel:
    """The model file ``--init`` names, refused with one line unless its networks have the run's sizes."""
    try:
        start = load_builtin(path)
    except (CharMotionError, OSError) as err:
        raise SystemExit(f"--init: {err}") from None
    run = merged_config(config)
    differ = [f"{section}.{key} is {start.config[section].get(key)} there, {run[section].get(key)} here"
              for section in ("model", "text_encoder") for key in sorted(set(run[section]) | set(start.config[section]))
              if run[section].get(key) != start.config[section].get(key)]
    if differ:
        raise SystemExit(f"--init {path} has other network sizes than this run: {'; '.join(differ)}. Give --config the "
                         "file's sizes (context_channels follows the field: keep its frame_pixels / grid, e.g. grid 32 "
                         "over frame_pixels 128 for a grid-16 file over 64)")
    return start


def settings_from_json(text: str, example: str, section: str | None = None) -> dict:
    """Model settings given as JSON on the command line: a table of settings by section, or of one ``section``'s
    settings. A ValueError says what is wrong (its message follows the option's name), with ``example``."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"is not JSON ({err}); e.g. '{example}'") from None
    if not isinstance(settings, dict):
        raise ValueError(f"takes a JSON object of {section + ' settings' if section else 'settings by section'}, e.g. '{example}'")
    if unknown := unknown_settings({section: settings} if section else settings):
        raise ValueError(f"has unknown setting(s) {', '.join(unknown)}")
    return settings


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    if args.config:
        try:
            settings_from_json(args.config, '{"model": {"depth": 6}, "field": {"grid": 32}}')
        except ValueError as err:
            raise SystemExit(f"--config {err}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    Trainer(args).run()


__all__ = ["Trainer", "bf16_is_native", "build_parser", "example_seed", "main", "settings_from_json"]
