"""Speed and memory of one STDiT3 forward pass.

Prints, per configuration: seconds per forward (median over the timed runs
after warm-up), tokens per second and peak memory (CUDA: max allocated; CPU:
the process's peak resident set, measured in a fresh subprocess per row).

Examples::

    python benchmarks/bench_stdit3.py                       # golden tiny + mid config, CPU, fp32, sdpa and math
    python benchmarks/bench_stdit3.py --preset xl --frames 15 --height 30 --width 53 --device cuda --dtype bf16 \
        --backend sdpa xformers
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

from _pack import load_pack  # benchmarks/ is on sys.path when run as a script


PRESETS = {
    # the golden test model: depth 2, hidden 64, 4 heads
    "golden": dict(depth=2, hidden_size=64, num_heads=4, caption_channels=32, model_max_length=8),
    # a mid-size model (hidden 384, depth 4)
    "mid": dict(depth=4, hidden_size=384, num_heads=6, caption_channels=512, model_max_length=32),
    # the published STDiT3-XL/2
    "xl": dict(depth=28, hidden_size=1152, num_heads=16, caption_channels=4096, model_max_length=300),
}
DEFAULT_ROWS = [
    dict(preset="golden", frames=5, height=8, width=12),
    dict(preset="mid", frames=8, height=32, width=32),
]




def measure(row: dict) -> dict:
    import torch

    load_pack()
    from charmotion.dit_core.models import STDiT3Config, build_stdit3, resolve_dtype

    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    if row.get("threads"):
        torch.set_num_threads(row["threads"])
    device = torch.device(row["device"])
    dtype = resolve_dtype(row["dtype"])
    config = STDiT3Config(**PRESETS[row["preset"]])
    model = build_stdit3(config, device="cpu").initialize_weights()
    for block in model.temporal_blocks:  # give the zero-initialised projections some weight
        for p in (block.attn.proj.weight, block.cross_attn.proj.weight, block.mlp.fc2.weight):
            p.normal_(0, 0.02)
    model = model.to(device=device, dtype=dtype).eval()
    model.set_attention_backend(row["backend"])
    batch, tokens = row["batch"], row["text_tokens"]
    x = torch.randn(batch, config.in_channels, row["frames"], row["height"], row["width"], device=device)
    t = torch.full((batch,), 700.0, device=device)
    y = torch.randn(batch, 1, config.model_max_length, config.caption_channels, device=device)
    mask = torch.zeros(batch, config.model_max_length, dtype=torch.long, device=device)
    mask[:, :tokens] = 1
    x_mask = torch.ones(batch, row["frames"], dtype=torch.bool, device=device)
    x_mask[:, 0] = False  # one conditioned frame, as in image-to-video
    args = dict(mask=mask, x_mask=x_mask, fps=torch.full((batch,), 24.0, device=device),
                height=torch.full((batch,), row["height"] * 8.0), width=torch.full((batch,), row["width"] * 8.0))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(row["warmup"]):
        model(x, t, y, **args)
    sync()
    times = []
    for _ in range(row["runs"]):
        start = time.perf_counter()
        model(x, t, y, **args)
        sync()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    patch = config.patch_size
    n_tokens = batch * -(-row["frames"] // patch[0]) * -(-row["height"] // patch[1]) * -(-row["width"] // patch[2])
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(row, seconds=seconds, tokens=n_tokens, tokens_per_s=n_tokens / seconds, peak_mb=peak_mb)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="model size (default: golden and mid rows)")
    parser.add_argument("--frames", type=int, help="latent frames")
    parser.add_argument("--height", type=int, help="latent height")
    parser.add_argument("--width", type=int, help="latent width")
    parser.add_argument("--batch", type=int, default=2, help="batch (2 = one CFG pair)")
    parser.add_argument("--text-tokens", type=int, default=8)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", nargs="+", default=["sdpa", "math"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--json", action="store_true", help="print rows as JSON lines")
    parser.add_argument("--_row", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._row:  # child process: measure one row
        print(json.dumps(measure(json.loads(args._row))))
        return

    if args.preset:
        base = [dict(preset=args.preset, frames=args.frames or 8, height=args.height or 32, width=args.width or 32)]
    else:
        base = DEFAULT_ROWS
    common = dict(batch=args.batch, text_tokens=args.text_tokens, dtype=args.dtype, device=args.device,
                  warmup=args.warmup, runs=args.runs, threads=args.threads)
    print(f"{'preset':7} {'T×H×W':>10} {'batch':>5} {'dtype':5} {'device':6} {'backend':8} "
          f"{'s/forward':>10} {'tokens/s':>10} {'peak MB':>8}")
    for shape in base:
        for backend in args.backend:
            row = dict(shape, backend=backend, **common)
            result = subprocess.run([sys.executable, __file__, "--_row", json.dumps(row)], capture_output=True, text=True)
            if result.returncode:
                print(f"{shape['preset']:7} {backend:8} failed: {result.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(result.stdout.strip().splitlines()[-1])
            if args.json:
                print(json.dumps(r))
                continue
            dims = f"{r['frames']}×{r['height']}×{r['width']}"
            print(f"{r['preset']:7} {dims:>10} {r['batch']:>5} {r['dtype']:5} {r['device']:6} {r['backend']:8} "
                  f"{r['seconds']:>10.4f} {r['tokens_per_s']:>10.0f} {r['peak_mb']:>8.0f}")


if __name__ == "__main__":
    main()
