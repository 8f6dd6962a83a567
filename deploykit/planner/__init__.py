"""The planner: which Qwen3.5 checkpoints fit an inventory, at which precision and layout, and how fast.

models (catalog + HF config.json loader) -> anatomy (derived sizes) -> gpus / inventory (profiles, hardware rules)
-> memory (per-GPU terms) -> roofline (tok/s) -> layout (search) -> plan (`make_plan`) -> render (table/json/yaml).
Imports no torch: `deploykit plan` runs on a machine without it. See docs/planner.md.
"""
