"""deploykit's tests: a package, so each test folder imports as `tests.<folder>` and none can shadow an
installed module of the same name (transformers >= 5.25 imports Hugging Face's `kernels`)."""
