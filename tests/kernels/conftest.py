"""Kernel tests run on the CPU through Triton's interpreter; it must be on before any kernel is imported.
Note: set at collection time, so it holds for the whole pytest process (kernels imported later anywhere are
interpreted too; tests/kernels/test_aot.py compiles PTX in a subprocess without it)."""

import os

os.environ["TRITON_INTERPRET"] = "1"
