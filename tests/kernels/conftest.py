"""Kernel tests run on the CPU through Triton's interpreter; it must be on before any kernel is imported."""

import os

os.environ["TRITON_INTERPRET"] = "1"
