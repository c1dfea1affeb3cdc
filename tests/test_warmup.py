"""The server's warm-up: the default session's first-use work, reported part by part, with no
effect on the process's torch settings."""
import torch

from pruning.config import RunConfig
from pruning.warmup import warm_up


def test_warm_up_does_each_part_of_a_first_run_and_leaves_threads_alone():
    threads = torch.get_num_threads()
    ticks = iter(range(100))
    parts = warm_up(RunConfig(device="cpu"), clock=lambda: float(next(ticks)))
    assert parts == {"imports": 1.0, "data": 1.0, "model_and_flops": 1.0, "training_step": 1.0,
                     "compaction": 1.0}
    assert torch.get_num_threads() == threads
