"""Benchmarks behind ``dyadgen bench``: parameter and FLOP counts, memory estimates checked against a real
step, preprocessing and shard-reading rates, generation speed. Figures are ratios measured in one run."""
