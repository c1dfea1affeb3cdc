"""What pruning buys, measured: parameters and the three sparsities, FLOPs, latency (METHODS.md §7).

``sparsity.param_counts``/``sparsity_report``, ``flops.count_flops``/``masked_flops`` and
``latency.measure_latency``; the speed lab (``pruning.speedlab``) builds on them.
"""
from pruning.metrics.flops import count_flops, masked_flops
from pruning.metrics.latency import measure_latency
from pruning.metrics.sparsity import param_counts, sparsity_report

__all__ = ["count_flops", "masked_flops", "measure_latency", "param_counts", "sparsity_report"]
