"""Training cells alone or packed: K cells of a campaign as one network grouped K ways.

Stage: cells (:class:`fer3d.train.cell.Cell`) -> trained weights, fold records. A pack of
K cells trains as one network (:func:`fer3d.models.packed.pack_models`): each step feeds
every cell its own batch (the one it would take alone, :func:`fer3d.train.sources.
pack_batches`), gives it its own loss, and one Adam, elementwise, keeps each cell's own
moments. K = 1 is a cell alone, through the same code. Each cell is saved, resumed,
validated, tested and recorded on its own, in its own directory, with the same files as a
lone cell: a checkpoint written in a pack resumes alone and the other way round. Cells are
packed only when they can step together: the same resume epoch and the same number and
size of training batches (:func:`packs`).

The process keeps its networks (:class:`Models`): a later pack of the same size loads its
cells' weights into the same parameters, so ``torch.compile`` (and CUDA graphs, whose
recorded addresses stay valid) happens once per process, not once per cell.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack

import torch
from tqdm.auto import tqdm

from fer3d.errors import ConfigError, DivergedError
from fer3d.models.packed import (
    pack_models,
    pack_optimizer_state,
    pack_state,
    unpack_optimizer_state,
    unpack_state,
)
from fer3d.train.cell import Cell, CellRun, tensorboard
from fer3d.train.checkpoint import SaveCadence, state_bytes
from fer3d.train.runtime import make_optimizer
from fer3d.train.step import place_model, train_epoch
from fer3d.train.transforms import NO_AUGMENT, Augment

log = logging.getLogger(__name__)

# auto on CUDA: packs of at most PACK_MAX cells (gpu_check.py times 1, 4, 8 and 16; past
# the size where one step's kernels fill the GPU, a larger pack saves no launch time) using
# at most PACK_MEMORY_SHARE of the free memory, one cell's need measured by one step.
PACK_MAX = 16
PACK_MEMORY_SHARE = 0.7


class Models:
    """A process's networks: one per pack size (with its compiled runner) and one lone
    evaluation model, each built once and reloaded for every pack."""

    def __init__(self, cfg, device: torch.device, compile_mode: str | None, num_classes: int):
        from fer3d.models import create_model

        self.cfg, self.device, self.compile_mode = cfg, device, compile_mode
        self.num_classes = num_classes
        with torch.device("meta"):
            self.template = create_model(cfg.variant, num_classes=num_classes,
                                         head_init=cfg.head_init)
        self._nets: dict[int, tuple[torch.nn.Module, torch.nn.Module]] = {}
        self._eval: torch.nn.Module | None = None
        self.compiles = 0

    def fresh_state(self) -> dict[str, torch.Tensor]:
        """Weights of a new network (for measuring, not a cell's draw)."""
        from fer3d.models import create_model

        return create_model(self.cfg.variant, num_classes=self.num_classes,
                            head_init=self.cfg.head_init).state_dict()

    def training(self, states: list[dict]) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(network, what runs it) holding ``states`` packed; built on first use per size."""
        k = len(states)
        if k not in self._nets:
            raw = place_model(pack_models(states, self.template, self.device), self.device,
                              self.cfg.channels_last)
            runner = raw
            if self.compile_mode is not None:
                self.compiles += 1
                runner = torch.compile(raw, mode=self.compile_mode)
            self._nets[k] = (raw, runner)
        else:
            self._nets[k][0].load_state_dict(pack_state(states))
        return self._nets[k]

    def evaluation(self, state: dict) -> torch.nn.Module:
        """The lone evaluation model holding ``state`` (eager: eval shapes vary)."""
        if self._eval is None:
            self._eval = place_model(pack_models([state], self.template, self.device),
                                     self.device, self.cfg.channels_last)
        else:
            self._eval.load_state_dict(state)
        return self._eval


def cell_bytes(run: CellRun) -> int:
    """GPU memory one cell takes while it trains (weights, Adam, one step's activations and
    workspaces), measured by one step of a lone network on a random batch."""
    from fer3d.train.step import Totals, train_step

    dev, cfg = run.device, run.cfg
    torch.cuda.synchronize(dev)
    before = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    model = place_model(pack_models([run.models.fresh_state()], run.models.template, dev),
                        dev, cfg.channels_last)
    s, b = cfg.image_size, cfg.batch_size
    batch = (torch.rand(b, 3, s, s, device=dev), torch.rand(b, 3, s, s, device=dev),
             torch.rand(b, 1, s // 4, s // 4, device=dev),
             torch.randint(0, run.models.num_classes, (b,), device=dev))
    train_step(model, batch, make_optimizer(model.parameters(), cfg.lr),
               torch.amp.GradScaler(dev.type, enabled=run.amp.scaler), run.amp, dev,
               Totals(1, dev), channels_last=cfg.channels_last)
    torch.cuda.synchronize(dev)
    need = torch.cuda.max_memory_allocated(dev) - before
    del model, batch
    torch.cuda.empty_cache()
    return need


def pack_size(requested: int | None, run: CellRun, share: float = 1.0) -> int:
    """Cells per pack: ``requested``, or (auto) as many as ``share`` of the free GPU memory
    holds, up to PACK_MAX; 1 on a CPU, where packing measured no faster than cells alone
    (grouped convolutions in oneDNN: docs/performance.md), and 1 without samples on the
    device (each cell then has its own loader) or with fp16 (one loss scale would skip
    every packed cell's step when one overflows)."""
    why = ("the samples are not on the device (--data-on-device)" if run.data is None else
           "fp16's loss scale would be shared by the packed cells: use bf16 or off"
           if run.amp.scaler else None)
    if requested is not None:
        if requested > 1 and why:
            raise ConfigError(f"--pack {requested}: {why}")
        return requested
    if why or run.device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(run.device)
    per_cell = cell_bytes(run)
    k = int(PACK_MEMORY_SHARE * share * free // max(per_cell, 1))
    log.info("one cell takes %.2f GB of %s; %.1f GB free", per_cell / 1e9, run.device,
             free / 1e9)
    return max(1, min(PACK_MAX, k))


def packs(cells: list[Cell], k: int) -> list[list[Cell]]:
    """``cells`` in packs of at most ``k`` that can step together (same start epoch and
    training batches), balanced: 10 cells at k = 8 give packs of 5 and 5, not 8 and 2."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        # without samples on the device each cell has its own loader: no packing
        key = (cell.start, cell.train_shape() if cell.run.data is not None else id(cell))
        groups.setdefault(key, []).append(cell)
    out = []
    for group in groups.values():
        n = -(-len(group) // max(1, k))
        size = -(-len(group) // n)
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


class _Pack:
    """K cells training as one network: model, optimizer, scaler, epochs, saves."""

    def __init__(self, run: CellRun, cells: list[Cell]):
        self.run, self.cells, self.k = run, cells, len(cells)
        self.raw, self.runner = run.models.training([c.initial_weights() for c in cells])
        self.optimizer = make_optimizer(self.raw.parameters(), run.cfg.lr)
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=run.amp.scaler)
        if cells[0].resumed is not None:
            self.optimizer.load_state_dict(pack_optimizer_state(
                [c.resumed["optimizer"] for c in cells]))
            if cells[0].resumed.get("scaler"):
                self.scaler.load_state_dict(cells[0].resumed["scaler"])
        self.cadence = SaveCadence(run.cfg.checkpoint_every)
        self.failed: dict[int, DivergedError] = {}

    def cell_states(self, epoch: int) -> list[dict]:
        """Each cell's resume checkpoint content (copies: a slice would save the pack)."""
        models = unpack_state(self.raw.state_dict(), self.k)
        optims = unpack_optimizer_state(self.optimizer.state_dict(), self.k)
        scaler = self.scaler.state_dict() if self.run.amp.scaler else {}
        return [c.state(epoch, _copy(m), _copy(o), scaler)
                for c, m, o in zip(self.cells, models, optims)]

    def live(self) -> list[int]:
        return [i for i in range(self.k) if i not in self.failed]

    def train_batches(self, epoch: int, sources):
        if self.k == 1:
            return sources[0].train_batches(self.cells[0].epoch_seed(epoch))
        from fer3d.train.sources import pack_batches

        return pack_batches(sources, [c.epoch_seed(epoch) for c in self.cells])

    def epoch(self, epoch: int, sources, bar) -> list[dict]:
        cfg = self.run.cfg
        stats, diverged = train_epoch(
            self.runner, self.train_batches(epoch, sources), self.optimizer, self.scaler,
            self.run.amp, self.run.device, cells=self.k, channels_last=cfg.channels_last,
            nan_check_every=cfg.nan_check_every, bar=bar)
        for i, what in diverged.items():
            if i not in self.failed:
                cell = self.cells[i]
                self.failed[i] = DivergedError(f"{cell.where}, epoch {epoch}: {what}; the "
                                               "cell stopped (its last checkpoint is kept)")
                log.error("%s", self.failed[i])
        return [{"epoch": epoch, **{k: round(v, 6) for k, v in s.items()}} for s in stats]

    def after_epoch(self, epoch: int, rows: list[dict], vals, tbs) -> None:
        """Validate, log and (when due) save every cell still training."""
        state = unpack_state(self.raw.state_dict(), self.k)
        for i in self.live():
            cell, row = self.cells[i], rows[i]
            if vals[i] is not None:
                row["val_acc"] = cell.validate(self.run.models.evaluation(state[i]), vals[i],
                                               epoch)
            cell.log_epoch(row, tbs[i])
        if self.run.on_epoch and self.live():
            first = self.cells[self.live()[0]]
            pack_sps = sum(rows[i]["samples_per_s"] for i in self.live())
            self.run.on_epoch(first.repeat, first.fold, epoch,
                              {**rows[0], "samples_per_s": pack_sps,
                               "n_train": round(rows[0]["samples_per_s"] * rows[0]["time"])})
        nbytes = self.k * state_bytes(state[0])
        if epoch < self.run.cfg.epochs and self.cadence.due(epoch, rows[0]["time"], nbytes):
            t0 = time.perf_counter()
            for i, content in enumerate(self.cell_states(epoch)):
                if i not in self.failed:
                    self.cells[i].ckpt.save_resume(content)
            self.cadence.saved(time.perf_counter() - t0)

    def fit(self, stack: ExitStack) -> None:
        cfg, cells = self.run.cfg, self.cells
        aug = Augment() if cfg.augment else NO_AUGMENT
        sources = [stack.enter_context(_closing(c.source("train", aug))) for c in cells]
        vals = [stack.enter_context(_closing(c.source("val"))) if len(c.rows["val"]) else None
                for c in cells]
        tbs = [stack.enter_context(_closing(tensorboard(self.run, c.repeat, c.fold)))
               for c in cells]
        start = cells[0].start
        name = " ".join(f"r{c.repeat} f{c.fold}" for c in cells[:3]) + (
            " ..." if self.k > 3 else "")
        bar = stack.enter_context(_closing(tqdm(
            total=sum(len(s) for s in sources) * (cfg.epochs - start), desc=name, unit="img",
            disable=not cfg.progress, leave=False, dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0)))
        for epoch in range(start + 1, cfg.epochs + 1):
            rows = self.epoch(epoch, sources, bar)
            if not self.live():
                return
            self.after_epoch(epoch, rows, vals, tbs)

    def finish(self) -> list[dict | Exception]:
        """Test and record every cell that did not diverge; the others' errors."""
        state = unpack_state(self.raw.state_dict(), self.k)
        full = self.cell_states(self.run.cfg.epochs) if self.run.cfg.keep == "full" else None
        out: list[dict | Exception] = []
        for i, cell in enumerate(self.cells):
            if i in self.failed:
                out.append(self.failed[i])
                continue
            model = self.run.models.evaluation(state[i])
            out.append(cell.finish(model, lambda i=i: full[i], pack=self.k))
        return out


def _copy(tree):
    """Tensors of a (nested) state copied out of the pack's storage."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_copy(v) for v in tree]
    return tree


class _closing:
    """A context manager closing ``thing`` (a source, writer or bar; None: nothing)."""

    def __init__(self, thing):
        self.thing = thing

    def __enter__(self):
        return self.thing

    def __exit__(self, *exc):
        if self.thing is not None:
            self.thing.close()


def train_pack(run: CellRun, cells: list[Cell]) -> list[dict | Exception]:
    """Train and test ``cells`` (restored, able to step together) as one pack."""
    pack = _Pack(run, cells)
    with ExitStack() as stack:
        pack.fit(stack)
    return pack.finish()


def train_cells(run: CellRun, cells: list[tuple[int, int]]) -> list[dict | Exception]:
    """Train and test the (repeat, fold) ``cells`` in packs of up to ``run.pack``; for each,
    its fold record or the error that stopped it (a cell whose checkpoint cannot be read
    or whose loss diverged fails alone; the others go on)."""
    out: dict[tuple[int, int], dict | Exception] = {}
    ready = []
    for repeat, fold in cells:
        try:
            cell = Cell(run, repeat, fold)
            cell.restore()
            ready.append(cell)
        except Exception as exc:  # noqa: BLE001 (recorded per cell; the others go on)
            log.error("r%d f%d: %s", repeat, fold, exc)
            out[(repeat, fold)] = exc
    for pack in packs(ready, run.pack):
        for cell, result in zip(pack, train_pack(run, pack)):
            out[(cell.repeat, cell.fold)] = result
    return [out[c] for c in cells]
