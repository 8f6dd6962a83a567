"""Reference PyTorch model of the Qwen3.5 text stack (dense + MoE) with explicit state.

- `config`   TextConfig parsed from a Hugging Face config.json (torch-free).
- `model`    Qwen35: `model(input_ids, position_ids, attention_mask, state) -> (logits, new_state)`.
- `loader`   load_model(path, dtype, device), random_model(config, dtype, device, seed), random_tensor(...).
- `testing`  make_tiny_checkpoint(kind, out_dir, **overrides): tiny checkpoints written by transformers.

Import the submodules (this package does not import torch by itself).
"""
