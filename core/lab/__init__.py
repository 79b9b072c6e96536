"""Experiments and evaluations, apart from the library: the real-model experiment
(``cachemux.lab.live``: the cloze task; ``mmlu_task``: MMLU letter answers and their resumable
measurements; ``protocol``: the paper's protocol through ``CacheMuxRouter``, replayed or live),
the trained multiplexer's evaluation (``multiplexer_eval``, the ``train-multiplexer`` command),
the semantic threshold calibration (``calibrate_semantic``).

Imported only by the command line, ``benchmarks/`` and the tests: nothing in the library imports
it. The paper's simulator suites stay in ``cachemux.sim`` (a documented part of the library).
"""
