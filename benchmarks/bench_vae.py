"""Speed and peak memory of the Open-Sora video VAE for growing clip lengths.

For 1×, 2× and 4× a base frame count at a fixed resolution, prints seconds and
peak memory of: streamed decode (``iter_decode``, chunks dropped as they come,
the way frames are written to disk), full decode (``decode`` into one output
tensor) and encode. Chunked processing should keep the peak flat: only the
input/output tensors themselves grow with the clip.

Memory on CPU is the peak resident set of a fresh subprocess per row
(``resource.getrusage``; it includes a warm-up call on one chunk), shown in
total and as the growth above the resident set just before the timed call
(model and input already allocated); on CUDA, ``torch.cuda.max_memory_allocated``
after the warm-up. The model is randomly initialised (no weights needed). "counted" is what the memory
check (``dit_core.memory``) counts for that decode: working memory and the finished frames, not the
weights; it should stay above the growth (it also counts ~128 MB of first-use workspace that the warm-up
already paid) and not far above it.

On CPU the measuring processes run with glibc's mmap threshold pinned
(``MALLOC_MMAP_THRESHOLD_=131072``): with the default dynamic threshold, freed
activations fragment the heap and the peak RSS of identical runs varies by
about ±10 %, which hides what the code itself holds. ``--malloc-mmap-threshold
0`` measures with the default allocator (use ``--repeats 3`` for medians).
Timings on a shared CPU are noisy; compare rows from the same run.

Examples::

    python benchmarks/bench_vae.py                                # mid config, 17/34/68 frames at 128×128, CPU
    python benchmarks/bench_vae.py --repeats 3 --malloc-mmap-threshold 0      # glibc's default allocator
    python benchmarks/bench_vae.py --frames 17 --height 256 --width 256 --tile 128
    python benchmarks/bench_vae.py --preset published --device cuda --dtype bf16 --height 480 --width 848
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _pack import load_pack  # benchmarks/ is on sys.path when run as a script


PRESETS = {
    # the golden test model (factor-2 2-D VAE, 16-channel temporal VAE)
    "golden": dict(
        spatial=dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8),
        temporal=dict(filters=16, num_res_blocks=1, channel_multipliers=(1, 2, 2, 2), num_groups=8),
    ),
    # same structure as the published model (factor 8, 4× time), about a sixteenth of the width
    "mid": dict(
        spatial=dict(block_out_channels=(32, 64, 128, 128), layers_per_block=2, norm_num_groups=32),
        temporal=dict(filters=32, num_res_blocks=2, channel_multipliers=(1, 2, 2, 4), num_groups=32),
    ),
    # hpcai-tech/OpenSora-VAE-v1.2
    "published": dict(spatial={}, temporal={}),
}
MODES = ("stream", "decode", "encode")




def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def measure(row: dict) -> dict:
    import torch

    load_pack()
    from charmotion.dit_core.vae import OpenSoraVAE, SpatialTiling, SpatialVAEConfig, TemporalVAEConfig, VideoVAEConfig

    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    if row["threads"]:
        torch.set_num_threads(row["threads"])
    device = torch.device(row["device"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[row["dtype"]]
    preset = PRESETS[row["preset"]]
    config = VideoVAEConfig(spatial=SpatialVAEConfig(**preset["spatial"]), temporal=TemporalVAEConfig(**preset["temporal"]))
    tiling = SpatialTiling(row["tile"], row["tile"] // 4) if row["tile"] else None
    vae = OpenSoraVAE(config, micro_batch_size=row["micro_batch"], tiling=tiling).to(device=device, dtype=dtype).eval()
    # scale/shift stay float32, as the loader keeps them
    vae.scale, vae.shift = vae.scale.float(), vae.shift.float()

    frames, height, width = row["frames"], row["height"], row["width"]
    h, w = vae.latent_size(height, width)
    # inputs live on the CPU like ComfyUI's IMAGE/LATENT; the VAE moves one chunk at a time
    if row["mode"] == "encode":
        data = torch.rand(1, 3, frames, height, width) * 2 - 1
    else:
        data = torch.randn(1, vae.latent_channels, vae.latent_frames(frames), h, w)

    def run(n_frames: int):
        if row["mode"] == "encode":
            vae.encode(data[:, :, :n_frames])
        elif row["mode"] == "decode":
            vae.decode(data[:, :, : vae.latent_frames(n_frames)], n_frames)
        else:
            for chunk in vae.iter_decode(data[:, :, : vae.latent_frames(n_frames)], n_frames):
                del chunk

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(min(frames, vae.micro_frame_size))  # warm-up on one chunk (kernel selection, allocator)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = current_rss_mb()
    start = time.perf_counter()
    run(frames)
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
    from charmotion.dit_core.memory import decode_bytes

    counted = 0.0 if row["mode"] == "encode" else decode_bytes(vae, size=(width, height), frames=frames) / 2**20
    return dict(row, seconds=seconds, peak_mb=peak, base_mb=base, growth_mb=peak - base, counted_mb=counted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="mid")
    parser.add_argument("--frames", type=int, default=17, help="base frame count (1×)")
    parser.add_argument("--multipliers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--micro-batch", type=int, default=4, help="frames per 2-D VAE call")
    parser.add_argument("--tile", type=int, default=0, help="spatial tile in pixels (0: no tiling)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument(
        "--malloc-mmap-threshold", type=int, default=131072, metavar="BYTES",
        help="glibc MALLOC_MMAP_THRESHOLD_ for the measuring processes (default 131072): buffers above it are "
        "mapped and unmapped, so freed activations go back to the OS instead of fragmenting the heap and the "
        "peak RSS shows what the code holds; 0 keeps glibc's dynamic threshold (what a user gets; peak RSS of "
        "identical runs then varies by about ±10%%, and timings are a little faster)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per row; medians are printed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return

    env = dict(os.environ)
    if args.malloc_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    print(
        f"video VAE, preset {args.preset}, {args.height}x{args.width}, {args.dtype} on {args.device}, "
        f"micro-batch {args.micro_batch}, tile {args.tile or 'off'}, "
        f"malloc mmap threshold {args.malloc_mmap_threshold or 'glibc default (dynamic)'}"
    )
    unit = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS"
    print(f"{'mode':<8}{'frames':>7}{'seconds':>10}{'peak MB':>10}{'growth MB':>11}{'counted MB':>12}   "
          f"({unit}; growth = peak - before call; counted = the memory check's decode estimate)")
    for mode in args.modes:
        first = None
        for m in args.multipliers:
            row = dict(
                preset=args.preset, mode=mode, frames=args.frames * m, height=args.height, width=args.width,
                device=args.device, dtype=args.dtype, micro_batch=args.micro_batch, tile=args.tile,
                threads=args.threads,
            )
            runs = []
            for _ in range(args.repeats):
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(row)], capture_output=True, text=True, env=env
                )
                if proc.returncode:
                    sys.exit(proc.stderr)
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            result = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "peak_mb", "growth_mb", "counted_mb")}
            result["frames"] = row["frames"]
            first = first or result
            note = f"  peak {100 * (result['peak_mb'] / first['peak_mb'] - 1):+.1f}% vs {first['frames']} frames"
            print(
                f"{mode:<8}{result['frames']:>7}{result['seconds']:>10.2f}{result['peak_mb']:>10.0f}"
                f"{result['growth_mb']:>11.0f}{result['counted_mb'] or float('nan'):>12.0f}"
                f"{note if m != args.multipliers[0] else ''}"
            )


if __name__ == "__main__":
    main()
