"""Benchmarks: the one home of the code benchmarks share, and the research benchmarks.

* :mod:`.harness` -- what every benchmark shares: results and data folders, the dev image
  sets, median timing, writing and printing a result table, seeds and learning-rate grids;
* :mod:`.inna_bench`, :mod:`.recsys_bench`, :mod:`.abc_bench` -- the research benchmarks
  (``satcodec research ...``), installed with the package;
* :mod:`.gpu_jobs` -- the jobs ``bench/train_gpu.py`` trains on a GPU.

The codec benchmarks are scripts in ``bench/`` (``python bench/NAME.py``): thin entry points
that import this package, never each other through ``sys.path``. Benchmarks may combine the
codec, the evaluation and research code (which never import each other); nothing in the
library imports benchmarks (only the CLI, lazily).
"""
