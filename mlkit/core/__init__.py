"""Shared core: config, runs, checkpoints, console, runtime, errors, metrics.

Modules here never import torch at import time, except checkpoint, trainer and runtime's torch helpers,
which import it inside functions, so `import mlkit.cli` stays light.
"""
