"""Test configuration shared by the whole suite."""

import os

import torch

# Triton kernels run through Triton's interpreter on machines without a GPU, so the
# kernels are exercised by the normal suite on CPU; on CUDA machines they are compiled.
# This must happen before any module defines a @triton.jit kernel.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Keep the suite deterministic and within the CI machine's two cores.
torch.set_num_threads(min(2, os.cpu_count() or 1))
