"""deploykit: Qwen3.5 from "which GPUs do I need?" to a validated, compiled engine.

Importing the package does no work: the planner must start without torch, onnx or tensorrt.
"""

__version__ = "0.1.0"
