"""Training loop shared by every method: ``fit(model, ctx, epochs=..., hooks=...)``.

Methods customise training through ``TrainHooks`` instead of writing their own loops: the
schedule-driven pruners re-prune after optimizer steps, ASWL adds its regulariser and steps its
attention optimizer, ADMM unification adds its penalty and updates Z and U. ``fit`` owns what
every run needs: seeded batching, the optimizer and LR schedule, per-epoch evaluation, live
events, mask snapshots spread over the run, a clean stop (``RunStopped``) between steps, and
the end of a run whose loss or weights stop being finite (``RunDiverged``, see ``_Divergence``).

The hot loop avoids work that does not change results: evaluation runs once per epoch, progress
events are throttled by time (``PROGRESS_INTERVAL_S`` of the stopwatch's clock, so live curves
move several times a second whatever a step costs), and mask statistics are taken from the hooks'
current Mask only when reported.

Evaluation, mask snapshots, epoch records and events are composable callbacks around the loop
(``standard_callbacks``, after open_lth's): a caller can drop, reorder or add one through
``RunContext.callbacks`` without touching the loop. ``TrainHooks`` stay for what changes the
training itself.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from pruning.config import RunConfig
from pruning.masks import Mask


class RunStopped(Exception):
    """Raised inside ``fit`` when the caller's ``should_stop()`` turns true (a clean stop)."""


class RunDiverged(Exception):
    """Raised inside ``fit`` when training stopped being finite; the message names the epoch, the
    step, what went wrong and the fix (one line, shown as the failed run's reason)."""


@dataclass(frozen=True)
class Event:
    """What a caller's ``on_event`` receives: phase, step (of total) and a metrics dict."""
    phase: str
    step: int
    total: int
    metrics: dict[str, Any] = field(default_factory=dict)


class Recorder(Protocol):
    """Where a run's history goes (the store, or memory in tests)."""

    def epoch(self, row: dict[str, Any]) -> None: ...
    def trace(self, kind: str, step: int, payload: dict[str, Any]) -> None: ...
    def snapshot(self, step: int, epoch: float, mask: Mask) -> None: ...


class MemoryRecorder:
    """Keeps everything in lists; used by tests and by benchmarks that need no store."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.traces: list[tuple[str, int, dict[str, Any]]] = []
        self.snapshots: list[tuple[int, float, Mask]] = []

    def epoch(self, row):
        self.epochs.append(row)

    def trace(self, kind, step, payload):
        self.traces.append((kind, step, payload))

    def snapshot(self, step, epoch, mask):
        self.snapshots.append((step, epoch, mask))


class Stopwatch:
    """Where a run's time goes: ``with stopwatch("method"): ...`` adds the block's time to a part.

    Spans nest and a part is charged only its own time: entering an inner span pauses the outer
    one, leaving it resumes the outer, so a method's fit (training, evaluation, recording inside
    the method's span) is never counted twice and nothing is found by subtraction. ``clock`` is
    injectable (tests advance a fake clock). On a GPU kernels run asynchronously and the clock is
    read without waiting for them, so there the split between parts is approximate (a part that
    waits for the device is charged what was still queued).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.parts: dict[str, float] = {}
        self._open: list[str] = []  # the parts of the spans now open, innermost last
        self._since = 0.0           # when the innermost open span was last charged

    def __call__(self, part: str) -> "_Span":
        return _Span(self, part)

    def _enter(self, part: str) -> None:
        now = self.clock()
        if self._open:
            self._charge(now)
        self._open.append(part)
        self._since = now

    def _exit(self) -> None:
        self._charge(self.clock())
        self._open.pop()

    def _charge(self, now: float) -> None:
        part = self._open[-1]
        self.parts[part] = self.parts.get(part, 0.0) + now - self._since
        self._since = now


class _Span:
    """One ``with stopwatch(part):`` block (a class, not a generator: it runs at every step)."""
    __slots__ = ("stopwatch", "part")

    def __init__(self, stopwatch: Stopwatch, part: str):
        self.stopwatch, self.part = stopwatch, part

    def __enter__(self) -> None:
        self.stopwatch._enter(self.part)

    def __exit__(self, *exc_info) -> None:
        self.stopwatch._exit()


@dataclass
class RunContext:
    """Everything a method needs to train: config, its own settings, data, device, callbacks."""
    config: RunConfig
    method_config: Any
    data: Any  # pruning.data.DataBundle
    device: torch.device
    recorder: Recorder
    on_event: Callable[[Event], None] | None = None
    should_stop: Callable[[], bool] | None = None
    # Running totals across the phases of one run (pretrain, prune, fine-tune ...)
    epochs_done: int = 0
    steps_done: int = 0
    total_epochs: int = 0  # planned epochs over all phases, for progress; set by the method
    snapshot_steps: set[int] = field(default_factory=set)
    # Seconds per part of the run, summed over phases: "training" (the step loop: batches,
    # forward, backward, optimizer), "method" (hooks after each step and per epoch),
    # "evaluation", "recording"; the session times the rest with the same stopwatch.
    stopwatch: Stopwatch = field(default_factory=Stopwatch)
    # What happens around fit's steps and epochs; None = standard_callbacks()
    callbacks: list["Callback"] | None = None

    def emit(self, phase: str, step: int, total: int, **metrics: Any) -> None:
        if self.on_event is not None:
            self.on_event(Event(phase, step, total, metrics))

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise RunStopped()

    def generator(self, salt: int = 0) -> torch.Generator:
        """A private generator for one use (data order, sampling) of this run's seed."""
        return torch.Generator().manual_seed(self.config.seed * 1000003 + salt)


class TrainHooks:
    """Override what a method changes; the defaults train a dense model."""

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters for the main optimizer (ASWL keeps its attentions out of it)."""
        return [p for p in model.parameters() if p.requires_grad]

    def on_train_start(self, model: nn.Module, total_steps: int) -> None:
        """Called once before the first step of this ``fit``."""

    def loss(self, model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """Add a regulariser to the task loss (ASWL, ADMM)."""
        return loss

    def after_step(self, model: nn.Module, step: int, progress: float,
                   batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        """After optimizer.step(); ``progress`` in [0, 1] over this fit; re-prune here."""

    def mask(self) -> Mask | None:
        """The current mask, for sparsity statistics and snapshots (None: no pruning)."""
        return None

    def target_sparsity(self) -> float | None:
        return None

    def epoch_metrics(self, model: nn.Module) -> dict[str, Any]:
        """Extra per-epoch values to record (e.g. ASWL attentions)."""
        return {}


@dataclass
class FitResult:
    steps: int
    epochs: int
    last: dict[str, Any]


def make_optimizer(params, config: RunConfig, lr: float | None = None) -> torch.optim.Optimizer:
    lr = config.lr if lr is None else lr
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the base LR at ``progress`` in [0, 1] of a fit."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    if schedule == "step":
        return 0.1 ** int(progress >= 0.5) * 0.1 ** int(progress >= 0.75)
    return 1.0


@torch.inference_mode()
def evaluate(model: nn.Module, data, device: torch.device, split: str = "test",
             batch_size: int = 512,
             check_stop: Callable[[], None] | None = None) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy in [0, 1]) on a split, model in eval mode.

    ``check_stop`` (e.g. ``RunContext.check_stop``) is called before each batch, so a stop is
    honoured within one batch even on a large test set.
    """
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for x, y in data.batches(split, batch_size, shuffle=False):
        if check_stop is not None:
            check_stop()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)  # (B, classes)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        count += y.numel()
    model.train(was_training)
    return total_loss / max(count, 1), correct / max(count, 1)


@dataclass
class FitState:
    """What ``fit``'s callbacks see: the run, the model, and where the loop is."""
    ctx: RunContext
    model: nn.Module
    hooks: TrainHooks
    optimizer: torch.optim.Optimizer
    phase: str
    epochs: int                 # epochs of this fit
    steps_per_epoch: int
    total_steps: int            # optimizer steps of this fit
    epoch: int = 0              # this fit's current epoch (0-based); at "epoch": the one ended
    step: int = 0               # optimizer steps of this fit so far
    divergence: _Divergence | None = None  # finds the first non-finite loss or weight
    loss: torch.Tensor | None = None  # the last step's task loss, detached
    epoch_started: float = 0.0  # stopwatch clock at the start of the epoch
    row: dict[str, Any] = field(default_factory=dict)  # at "epoch": the epoch's record so far
    # This epoch's sums so far, on the device (read only when reported): task loss × examples,
    # correct predictions, examples.
    loss_sum: torch.Tensor | None = None
    correct_sum: torch.Tensor | None = None
    seen: int = 0
    live: "_RunningCurves | None" = None  # what the progress events report (emit_progress)


#: ``callback(moment, state)``, moment "step" (after each optimizer step and the hooks) or
#: "epoch" (after each epoch's steps; ``state.row`` holds the epoch's training loss/accuracy)
Callback = Callable[[str, FitState], None]


def run_at(moment: str, action: Callable[[FitState], None]) -> Callback:
    """A callback that runs ``action(state)`` at ``moment`` ("step" or "epoch") only."""
    def callback(at: str, state: FitState) -> None:
        if at == moment:
            action(state)
    callback.__name__ = f"{moment}:{action.__name__}"
    return callback


def every_step(action: Callable[[FitState], None]) -> Callback:
    """A callback that runs ``action`` after every optimizer step."""
    return run_at("step", action)


def every_epoch(action: Callable[[FitState], None]) -> Callback:
    """A callback that runs ``action`` at the end of every epoch."""
    return run_at("epoch", action)


def save_snapshot(state: FitState) -> None:
    """The current mask, at the run's snapshot steps (spread over the whole run)."""
    ctx = state.ctx
    if ctx.steps_done not in ctx.snapshot_steps:
        return
    mask = state.hooks.mask()
    if mask is not None:
        with ctx.stopwatch("recording"):
            ctx.recorder.snapshot(ctx.steps_done, ctx.epochs_done + state.step
                                  / state.steps_per_epoch - state.epoch, mask)


def events_every(steps_per_epoch: int) -> int:
    """Steps between checks of the loss buffer for divergence: about four per epoch."""
    return max(1, steps_per_epoch // 4)


#: Seconds (of the stopwatch's clock) between progress events: live curves refresh at 4 Hz.
PROGRESS_INTERVAL_S = 0.25
#: Per-batch smoothing of the running loss and accuracy (an exponential moving average).
RUNNING_DECAY = 0.9


class _RunningCurves:
    """The running loss and training accuracy that progress events report.

    Between two events the epoch's device sums grow by the batches trained; their mean is
    folded into an exponential moving average as if batch by batch (weight
    ``RUNNING_DECAY ** batches`` for the old value), so the estimate is equally smooth whether
    an event comes after one slow step or after fifty fast ones. Reading the sums is the only
    host sync, once per event.
    """

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.last_event = -math.inf
        self.loss: float | None = None
        self.acc: float | None = None
        self.mark = (0.0, 0, 0, 0)  # the epoch's (loss sum, correct, seen, steps) at the last event

    def due(self, last_step_of_epoch: bool) -> bool:
        return last_step_of_epoch or self.clock() - self.last_event >= PROGRESS_INTERVAL_S

    def update(self, loss_sum: float, correct: int, seen: int, steps: int) -> None:
        """The epoch's sums after ``steps`` of its steps (a smaller ``steps``: a new epoch)."""
        self.last_event = self.clock()
        if steps < self.mark[3]:
            self.mark = (0.0, 0, 0, 0)
        old_loss, old_correct, old_seen, old_steps = self.mark
        self.mark = (loss_sum, correct, seen, steps)
        examples, batches = seen - old_seen, steps - old_steps
        if examples <= 0:
            return
        loss, acc = (loss_sum - old_loss) / examples, (correct - old_correct) / examples
        if self.loss is None or self.acc is None:
            self.loss, self.acc = loss, acc
            return
        keep = RUNNING_DECAY ** batches
        self.loss = keep * self.loss + (1 - keep) * loss
        self.acc = keep * self.acc + (1 - keep) * acc


def emit_progress(state: FitState) -> None:
    """A progress event at most every ``PROGRESS_INTERVAL_S`` seconds and at each epoch's last
    step: step of the run's total, running loss and training accuracy, mask sparsity, target."""
    ctx, spe = state.ctx, state.steps_per_epoch
    if state.live is None:
        state.live = _RunningCurves(ctx.stopwatch.clock)
    live = state.live
    in_epoch = state.step - state.epoch * spe
    if not live.due(in_epoch == spe):
        return
    with ctx.stopwatch("recording"):
        live.update(float(state.loss_sum), int(state.correct_sum), state.seen, in_epoch)
        mask = state.hooks.mask()
        # epochs_done counts this fit's finished epochs; ``state.epoch`` of them belong to this fit
        ctx.emit(state.phase, ctx.epochs_done * spe + in_epoch,
                 max(ctx.total_epochs, ctx.epochs_done - state.epoch + state.epochs) * spe,
                 loss=live.loss, train_acc_running=live.acc,
                 mask_sparsity=None if mask is None else mask.sparsity(),
                 target_sparsity=state.hooks.target_sparsity(), epoch=ctx.epochs_done + 1)


def evaluate_test(state: FitState) -> None:
    """Test loss and accuracy into the epoch's row (a non-finite test loss ends the run)."""
    ctx = state.ctx
    with ctx.stopwatch("evaluation"):
        test_loss, test_acc = evaluate(state.model, ctx.data, ctx.device,
                                       check_stop=ctx.check_stop)
    if state.divergence is not None:
        state.divergence.check_test_loss(test_loss)
    state.row.update(test_loss=test_loss, test_acc=test_acc)


def record_epoch(state: FitState) -> None:
    """The epoch's row (metrics, sparsities, the method's own values) into the recorder."""
    ctx, hooks = state.ctx, state.hooks
    with ctx.stopwatch("recording"):
        mask = hooks.mask()
        state.row.update({
            "lr": state.optimizer.param_groups[0]["lr"],
            "target_sparsity": hooks.target_sparsity(),
            "mask_sparsity": None if mask is None else mask.sparsity(),
            "layer_sparsity": None if mask is None else mask.layer_sparsity(),
            "epoch_time_s": ctx.stopwatch.clock() - state.epoch_started,
        })
    with ctx.stopwatch("method"):
        state.row.update(hooks.epoch_metrics(state.model))
    with ctx.stopwatch("recording"):
        ctx.recorder.epoch(state.row)


def emit_epoch(state: FitState) -> None:
    """An end-of-epoch event with the epoch's row (the live curves' points)."""
    ctx, spe, row = state.ctx, state.steps_per_epoch, state.row
    with ctx.stopwatch("recording"):
        ctx.emit(state.phase, ctx.epochs_done * spe, max(ctx.total_epochs, ctx.epochs_done) * spe,
                 **{k: v for k, v in row.items() if k not in ("layer_sparsity", "phase", "step")},
                 epoch_end=True)


def standard_callbacks() -> list[Callback]:
    """What every run does around its steps: mask snapshots, progress events, per-epoch test
    evaluation, the epoch's record and its event, in that order."""
    return [every_step(save_snapshot), every_step(emit_progress), every_epoch(evaluate_test),
            every_epoch(record_epoch), every_epoch(emit_epoch)]


def fit(model: nn.Module, ctx: RunContext, *, epochs: int, hooks: TrainHooks | None = None,
        phase: str = "train", lr: float | None = None) -> FitResult:
    """Train ``model`` for ``epochs`` epochs with ``hooks``; ``ctx.callbacks`` (by default
    ``standard_callbacks()``) evaluate, record and report around the steps.

    The step loop is timed as "training", the hooks' step work as "method", building the
    optimizer as "setup"; what else fit does outside the loop (``on_train_start``) counts to the
    caller's open span.
    Raises RunStopped (after recording what it had) when ctx.should_stop() becomes true.
    """
    hooks = hooks or TrainHooks()
    config, data, device, timer = ctx.config, ctx.data, ctx.device, ctx.stopwatch
    callbacks = standard_callbacks() if ctx.callbacks is None else ctx.callbacks
    model.to(device).train()
    # "setup", not the caller's span: a process's first optimizer imports torch._dynamo (about a
    # second), a one-time cost that is no part of the method's work
    with timer("setup"):
        optimizer = make_optimizer(hooks.parameters(model), config, lr)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    steps_per_epoch = data.steps_per_epoch("train", config.batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    hooks.on_train_start(model, total_steps)
    generator = ctx.generator(salt=ctx.epochs_done)
    divergence = _Divergence(steps_per_epoch, device)
    state = FitState(ctx, model, hooks, optimizer, phase, epochs, steps_per_epoch, total_steps,
                     divergence)
    check_every = events_every(steps_per_epoch)
    for epoch in range(epochs):
        state.epoch, state.epoch_started = epoch, timer.clock()
        divergence.start_epoch(ctx.epochs_done + 1, ctx.steps_done + 1)
        with timer("training"):
            state.loss_sum = torch.zeros((), device=device)
            state.correct_sum = torch.zeros((), device=device, dtype=torch.long)
            state.seen = 0
            for x, y in data.batches("train", config.batch_size, shuffle=True,
                                     generator=generator):
                ctx.check_stop()
                factor = lr_factor(config.lr_schedule, state.step / total_steps)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                logits = model(x)  # (B, classes)
                task_loss = F.cross_entropy(logits, y)
                loss = hooks.loss(model, task_loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                divergence.record(task_loss, loss)
                state.step += 1
                ctx.steps_done += 1
                with timer("method"):
                    hooks.after_step(model, state.step, state.step / total_steps, (x, y))
                # Accumulate on the device; one sync per epoch instead of one per step.
                state.loss = task_loss.detach()
                state.loss_sum += state.loss * y.numel()
                state.correct_sum += (logits.detach().argmax(1) == y).sum()
                state.seen += y.numel()
                if state.step % check_every == 0:
                    divergence.check_losses()  # the progress event's float(loss) syncs anyway
                for callback in callbacks:
                    callback("step", state)
            train_loss = float(state.loss_sum) / max(state.seen, 1)
            train_acc = float(state.correct_sum) / max(state.seen, 1)
            divergence.check_losses()
            divergence.check_weights(model)
        ctx.epochs_done += 1
        state.row = {"epoch": ctx.epochs_done, "phase": phase, "step": ctx.steps_done,
                     "train_loss": train_loss, "train_acc": train_acc}
        for callback in callbacks:
            callback("epoch", state)
    return FitResult(state.step, epochs, state.row)


class _Divergence:
    """Finds the first optimizer step whose loss is not finite, without a host sync per step.

    Each step copies its (task loss, total loss) into a small device buffer (one kernel, no
    wait); the buffer is read where ``fit`` waits for the device anyway: at each progress event
    (a few times per epoch, already reading the loss) and at the epoch's end, which also checks
    every parameter and buffer once and the evaluated test loss. So a diverged run ends at most a
    quarter of an epoch after its loss turns nan or inf, with the exact step named. The total loss includes what a method
    adds (ASWL's regulariser, the ADMM penalty): when only that part is not finite, the fix named
    is the method's setting rather than the learning rate.
    """

    def __init__(self, steps_per_epoch: int, device: torch.device):
        self.losses = torch.zeros((max(steps_per_epoch, 1), 2), device=device)  # (step, task|total)
        self.epoch, self.first_step, self.count, self.checked = 1, 1, 0, 0

    def start_epoch(self, epoch: int, first_step: int) -> None:
        """``epoch`` and ``first_step`` are the run's (1-based, over every phase)."""
        self.epoch, self.first_step, self.count, self.checked = epoch, first_step, 0, 0

    def record(self, task_loss: torch.Tensor, loss: torch.Tensor) -> None:
        if self.count < self.losses.shape[0]:
            self.losses[self.count] = torch.stack((task_loss.detach(), loss.detach()))
        self.count += 1

    def check_losses(self) -> None:
        start, end = self.checked, min(self.count, self.losses.shape[0])
        self.checked = end
        bad = ~torch.isfinite(self.losses[start:end]).all(dim=1)  # (steps,)
        if not bool(bad.any()):
            return
        index = start + int(bad.nonzero()[0])
        task, total = (float(v) for v in self.losses[index])
        where = f"diverged at epoch {self.epoch}, step {self.first_step + index}"
        if math.isfinite(task):
            raise RunDiverged(f"{where}: the method's added loss term makes the loss {total} (task "
                              f"loss {task:.3g}); lower the method's penalty setting or the "
                              f"learning rate")
        raise RunDiverged(f"{where}: loss is {task}; lower the learning rate")

    def check_test_loss(self, test_loss: float) -> None:
        """Weights can be finite yet so large that the evaluated loss overflows."""
        if not math.isfinite(test_loss):
            raise RunDiverged(f"diverged at epoch {self.epoch}: the test loss is {test_loss}; "
                              f"lower the learning rate")

    def check_weights(self, model: nn.Module) -> None:
        tensors = [(name, t) for name, t in (*model.named_parameters(), *model.named_buffers())
                   if t.is_floating_point()]
        if not tensors:
            return
        finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in tensors])  # (tensors,)
        if bool(finite.all()):
            return
        name = tensors[int((~finite).nonzero()[0])][0]
        raise RunDiverged(f"diverged at epoch {self.epoch}: {name} is no longer finite; "
                          f"lower the learning rate")


def seeded_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                   generator: torch.Generator | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """In-memory batching; much cheaper than a DataLoader for data that fits in memory."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
