"""The live panel's per-step curves: a job keeps its current run's progress points (bounded and
evenly thinned) and the chart draws running loss, accuracy and sparsity from them."""
import pandas as pd

from pruning.config import RunConfig
from pruning.store import RunStore
from pruning.training import Event
from ui import jobs
from ui.charts.training import LIVE_COLUMNS, live_curves

TINY = RunConfig(epochs=2, max_train_samples=256, snapshots=4)
TIMEOUT = 120


def progress(step, loss=1.0):
    return Event("train", step, 100, {"loss": loss, "train_acc_running": 0.5,
                                      "mask_sparsity": step / 200, "target_sparsity": 0.5})


def test_a_job_collects_each_runs_progress_points(tmp_path):
    def runner(config, store, on_event, should_stop, name, measure_latency):
        run_id = store.create_run(config)
        on_event(Event("created", 0, 0, {"run_id": run_id}))
        for step in (1, 2, 3):
            on_event(progress(step))
        on_event(Event("train", 3, 100, {"epoch_end": True, "test_acc": 0.7}))  # not a point
        store.finish_run(run_id, "done")
        return store.get_run(run_id)

    job = jobs.Job([TINY, TINY], RunStore(tmp_path), kind="sweep", runner=runner)
    assert job.start().wait(TIMEOUT)
    curve = job.progress().curve
    # the sweep's second run started a fresh curve
    assert [point[0] for point in curve] == [1, 2, 3]
    assert curve[0] == (1, 1.0, 0.5, 0.005, 0.5)


def test_a_long_runs_curve_stays_bounded_and_spans_the_run():
    curve: tuple = ()
    for step in range(1, 10 * jobs.CURVE_POINTS):
        curve = jobs._with_point(curve, (step,))
    steps = [point[0] for point in curve]
    assert len(steps) <= jobs.CURVE_POINTS
    assert steps[0] == 1 and steps[-1] == 10 * jobs.CURVE_POINTS - 1 and steps == sorted(steps)


def test_live_chart_draws_loss_accuracy_and_both_sparsities():
    points = pd.DataFrame([(s, 2.0 / s, 0.1 * s, 0.05 * s, 0.06 * s) for s in range(1, 6)],
                          columns=LIVE_COLUMNS)
    fig = live_curves(points)
    names = [trace.name for trace in fig.data]
    assert names == ["loss", "train acc", "target sparsity", "mask sparsity"]
    assert list(fig.data[0].y) == list(points["loss"])
    assert live_curves(points.iloc[:0]).data == ()  # the empty figure has no traces
