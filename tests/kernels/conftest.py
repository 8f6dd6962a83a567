"""Kernel tests run on the CPU through Triton's interpreter; it must be on before any kernel is imported.
Note: set at collection time, so it holds for the whole pytest process (kernels imported later anywhere are
interpreted too; tests/kernels/test_aot.py compiles PTX in a subprocess without it)."""

import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

_KERNEL_MODULES = ("deploykit.plugins.gated_delta_net.kernels", "deploykit.plugins.moe.kernels")
_early = [m for m in _KERNEL_MODULES if m in sys.modules]
if _early:  # imported as GPU kernels by an earlier test module: CPU tensors would fail with a confusing error
    from triton.runtime.interpreter import InterpretedFunction

    mod = sys.modules[_early[0]]
    if not any(isinstance(v, InterpretedFunction) for v in vars(mod).values()):
        raise RuntimeError(
            f"{_early[0]} was imported before TRITON_INTERPRET=1 was set; set it in that test "
            "folder's conftest.py too (see tests/builder/conftest.py)"
        )
