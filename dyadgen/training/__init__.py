"""Training: the loop state, EMA, optimizer and schedule, checkpoints, and the loop itself.

``scripts/train.py`` is the entry point; these modules are the pieces it wires together. Nothing here
assumes one process: the same code runs alone, under DDP or FSDP2 through ``accelerate`` (DeepSpeed is
refused: see distributed.py).
"""
