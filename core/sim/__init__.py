"""The paper's simulator: workloads (synthetic, MMLU routing), one method run through the joint
engine (``runner``), the paper's suites and ``cachemux reproduce``. numpy only (matplotlib for
the plots, imported when they are drawn)."""
