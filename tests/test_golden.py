"""Same seed, same result: short digits runs against the values in tests/golden_runs.json.

Each case's masks (hash of every snapshot's packed bits and its sparsity), the final weights
(hash) and the summary's numbers (timings and latency left out: they depend on the machine) must
equal the recorded ones exactly. Changing how runs are seeded, trained or summarised changes these
values; only a change that is meant to do so may re-record them, by running this file as a script
(``python tests/test_golden.py``) and saying why in the commit.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # when run as a script to re-record
    sys.path.insert(0, str(ROOT))

from pruning.config import RunConfig  # noqa: E402
from pruning.results import stored_summary  # noqa: E402
from pruning.session import run_session  # noqa: E402
from pruning.store import RunStore  # noqa: E402

FIXTURE = Path(__file__).with_name("golden_runs.json")
BASE = dict(epochs=2, max_train_samples=256, snapshots=3)
CASES = {
    "magnitude_one_cycle": {},
    "snip_one_shot": dict(method="snip", schedule="one_shot", window_start=0.0, window_end=0.0),
    "random": dict(method="random"),
    "magnitude_channel": dict(granularity="channel", sparsity=0.5),
    "magnitude_nm_2_4": dict(granularity="nm", nm_n=2, nm_m=4, sparsity=0.5),
    "ssc": dict(method="ssc"),
}
#: summary keys that depend on the machine, not on the seed
MACHINE_KEYS = ("duration_s", "time_breakdown_s", "prune_time_s")


def _numbers(value, prefix: str = "") -> dict[str, float]:
    """Every number of a (nested) summary, keyed by its path; machine-dependent keys left out."""
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key in MACHINE_KEYS or key.startswith("latency_"):
                continue
            out.update(_numbers(item, f"{prefix}{key}."))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            out.update(_numbers(item, f"{prefix}{i}."))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix.rstrip(".")] = value
    return out


def summary_numbers(summary: dict) -> dict[str, float]:
    """The comparable numbers of a summary as the store gives it back; the fixture was recorded
    before results had one layout, so it is read the way the store reads old runs."""
    return _numbers(stored_summary(summary))


def record(case: str, tmp: Path) -> dict:
    """Run one case and return what is compared: masks, final weights, summary numbers."""
    store = RunStore(tmp / case)
    run = run_session(RunConfig(**BASE, **CASES[case]), store, measure_latency=False)
    assert run.status == "done", run.error
    masks = []
    for snap in store.snapshots(run.id):
        mask = store.load_snapshot(run.id, snap["step"])
        masks.append({"step": snap["step"], "sparsity": snap["sparsity"],
                      "sha256": hashlib.sha256(mask.to_bytes()).hexdigest()})
    state = store.load_model(run.id).state_dict()
    weights = hashlib.sha256()
    for name in sorted(state):
        weights.update(name.encode())
        weights.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    epochs = [{k: e[k] for k in ("epoch", "train_loss", "test_acc", "mask_sparsity")}
              for e in store.epochs(run.id)]
    return {"masks": masks, "weights_sha256": weights.hexdigest(), "epochs": epochs,
            "summary": run.summary}


@pytest.mark.parametrize("case", list(CASES))
def test_same_seed_gives_the_recorded_masks_and_summary(case, tmp_path):
    golden = json.loads(FIXTURE.read_text())[case]
    fresh = record(case, tmp_path)
    assert fresh["masks"] == golden["masks"]
    assert fresh["weights_sha256"] == golden["weights_sha256"]
    assert fresh["epochs"] == golden["epochs"]
    expected, got = summary_numbers(golden["summary"]), summary_numbers(fresh["summary"])
    assert got == expected
    assert all(math.isfinite(v) for v in got.values())


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        import torch

        torch.set_num_threads(1)  # as the test suite runs (tests/conftest.py)
        data = {case: record(case, Path(folder)) for case in CASES}
    for entry in data.values():  # keep only what is compared
        entry["summary"] = {k: v for k, v in entry["summary"].items()
                            if k not in MACHINE_KEYS and not k.startswith("latency_")}
    FIXTURE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"recorded {', '.join(data)} in {FIXTURE}")
