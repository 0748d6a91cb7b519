#!/usr/bin/env bash
# A virtual environment in which xformers runs on an NVIDIA GPU: pip installs the newest xformers and lets it
# choose the torch it requires, then the pack's requirements and test requirements, and checks that xformers
# really computes attention on the GPU (a wheel built for another torch imports but cannot run its kernels).
#
#   bash benchmarks/gpu_env.sh                 # makes .venv-gpu (or the folder given as the first argument)
#   . .venv-gpu/bin/activate && python -m pytest -q tests/test_cuda.py -rs
#
# XFORMERS_INDEX picks another wheel index, e.g. https://download.pytorch.org/whl/cu128 for a CUDA 12.8 build of
# both (pip then takes the torch that index pairs with that xformers).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-gpu}

"${PYTHON:-python3}" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install --upgrade xformers ${XFORMERS_INDEX:+--index-url "$XFORMERS_INDEX"}
python -m pip install -r requirements.txt -r requirements-test.txt

python - <<'EOF'
import torch
import xformers
import xformers.ops as xops

print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), xformers {xformers.__version__}")
if not torch.cuda.is_available():
    raise SystemExit("no CUDA GPU visible to torch: install the torch build for your driver (pytorch.org)")
print("GPU:", torch.cuda.get_device_name(0))
q = torch.randn(1, 64, 16, 72, device="cuda", dtype=torch.bfloat16)
bias = xops.fmha.BlockDiagonalMask.from_seqlens([32, 32], [20, 44])
xops.memory_efficient_attention(q, q, q, attn_bias=bias)
print("xformers memory_efficient_attention runs on the GPU (bf16, block-diagonal mask)")
EOF
python -m xformers.info | head -n 25 || true
echo "ready: . $VENV/bin/activate"
