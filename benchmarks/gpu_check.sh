#!/usr/bin/env bash
# The one command for a GPU machine without network access: installs the wheels carried in .whl/, prints the
# GPU, torch and xformers versions, runs the CUDA tests, then benchmarks Open-Sora 1.2 side by side with upstream
# (480p and 720p x 51 frames, bf16: upstream, ours sdpa / xformers / torch.compile; a few timed steps each,
# extrapolated to 30), checks float32 agreement at 240p and, time left, the VAE decode's peak memory at
# 720p x 102 frames with tiling off and on. Logs and JSON go to $OUT as they are written, so a
# run stopped at its time limit still returns what it finished. Planned to take about 8 minutes on one H100.
#
# Run it from the repository root, with OUT naming the results folder (default out/gpu_check):
#   bash benchmarks/gpu_check.sh
#
# It needs, beside the repository's files (they are not part of it):
#   .whl/       wheels missing on the machine: xformers 0.0.35, diffusers + importlib_metadata + lazy-importer,
#               rotary-embedding-torch 0.5.3 + beartype, ftfy + wcwidth, beautifulsoup4 + soupsieve
#   .upstream/Open-Sora/   Open-Sora v1.2.0's opensora/ tree (git archive v1.2.0 opensora)
# GPU_CHECK_BUDGET (seconds, default 520) is the time the script plans to finish in.

set -u
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET:-520}
left() { echo $((BUDGET - (SECONDS - START))); }
stage() { echo; echo "=== [$((SECONDS - START)) s] $*"; }

stage "install carried wheels"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || { echo "wheel install failed"; exit 1; }

stage "versions"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 - <<'EOF'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version(), "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
for name in ("xformers", "triton", "diffusers", "timm", "torchvision", "transformers", "rotary-embedding-torch", "numpy"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} missing")
import xformers.ops as xops
q = torch.randn(1, 64, 16, 72, device="cuda", dtype=torch.bfloat16)
bias = xops.fmha.BlockDiagonalMask.from_seqlens([32, 32], [20, 44])
out = xops.memory_efficient_attention(q, q, q, attn_bias=bias)
print("xformers memory_efficient_attention on CUDA (bf16, block-diagonal):", tuple(out.shape), "ok")
EOF
timeout 60 python3 -m xformers.info > "$OUT/xformers_info.txt" 2>&1; head -n 30 "$OUT/xformers_info.txt"

stage "CUDA tests"
set -o pipefail
timeout -k 5 150 python3 -m pytest -q tests/test_cuda.py -rs -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log"
echo "pytest exit code $?"

stage "benchmark: 480p and 720p x 51 frames, bf16 ($(left) s left)"
timeout -k 5 $(( $(left) > 200 ? $(left) - 50 : 150 )) python3 benchmarks/bench_gpu.py --upstream .upstream/Open-Sora \
  --preset xl --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
echo "bench_gpu exit code $?"

if [ "$(left)" -ge 40 ]; then
  stage "float32 agreement at 240p (upstream's math attention vs ours sdpa, 2-step schedule; $(left) s left)"
  timeout -k 5 $(( $(left) - 3 )) python3 benchmarks/bench_gpu.py --upstream .upstream/Open-Sora --preset xl \
    --dtype fp32 --sizes 240x426 --rows upstream sdpa --upstream-attn math --timed-steps 2 --warmup-steps 0 \
    --json "$OUT/bench_fp32.json" 2>&1 | tee "$OUT/bench_fp32.log"
  echo "bench_gpu (fp32) exit code $?"
else
  stage "float32 agreement skipped: $(left) s left"
fi
if [ "$(left)" -ge 60 ]; then
  stage "VAE decode peak memory at 720p x 102 frames, tiling off then 256-pixel tiles ($(left) s left)"
  for tile in 0 256; do
    timeout -k 5 $(( $(left) > 35 ? ($(left) - 5) / 2 : 15 )) python3 benchmarks/bench_vae.py --preset published \
      --device cuda --dtype bf16 --height 720 --width 1280 --frames 102 --multipliers 1 --modes stream decode \
      --tile $tile 2>&1 | tee -a "$OUT/vae_720p_102f.log"
  done
else
  stage "VAE decode memory skipped: $(left) s left"
fi
stage "done"
