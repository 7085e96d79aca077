"""Research modules trained with the shared trainer.

Rule: nothing under ``satcodec.research`` imports the codec (``satcodec.codec``), and the codec
never imports research code. Benchmarks that need both live in :mod:`satcodec.benchmarks`.
"""
