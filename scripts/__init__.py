"""Developer scripts; a package so that tests and benchmarks import ``scripts.train_digits``."""
