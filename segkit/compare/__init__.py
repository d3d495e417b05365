"""Controlled comparisons of model variants (``segkit compare``), one job per module.

``spec`` (what to compare, from YAML and the command line), ``plan`` (the factorial of variants × seeds,
run folders, what is finished), ``schedule`` (runs one per GPU in subprocesses), ``memory`` and ``measure``
(per-run latency, peak memory, logits), ``checkerboard`` (the artefact index), ``slices`` (where the panels
look), ``results`` (``result.json`` and reading finished runs), ``stats`` (summaries and paired tests),
``tables``, ``figures``, ``panels`` and ``panel_data`` (the report's content), ``document`` (markdown/HTML
rendering) and ``report`` (assembling and writing it). The training/prediction orchestration is
``segkit.pipelines.compare``.
"""
