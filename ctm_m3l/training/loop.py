"""The epoch loop of ``M3LTM.fit``: batches, optimizer steps, early stopping, history,
progress and checkpoints, as one small object (in the manner of Lightning's ``FitLoop``)."""
from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..persistence import check_finite, dataset_digest
from .batches import DeviceData, batch_indices
from .checkpoint import EarlyStopping, restore_checkpoint, write_checkpoint
from .compile import compile_objective
from .distributed import Distributed, gather_batch
from .objective import TERMS, Objective
from .topic_fit import topics_train

__all__ = ["FitLoop"]


class FitLoop:
    """Trains ``estimator.model`` (already built) with ``estimator``'s optimizer and settings.

    ``distributed``: this rank's place in a data-parallel run (DDP wraps the objective);
    ``compile``: the objective is compiled with ``torch.compile`` (single process only).
    """

    def __init__(self, estimator, distributed: Distributed | None = None, compile: bool = False) -> None:
        self.estimator = estimator
        self.distributed = distributed
        self.world = distributed.world if distributed else 1
        e = estimator
        self.objective = Objective(e.model, e.weights, e.pair_kl_on, e.temperature, e.similarity,
                                   e.contrastive_reduction, world=self.world,
                                   image_views=[e.view_kinds[v] == "image" for v in e.views])
        self.language_positions = [e.views.index(v) for v in e.language_views]
        self.data_parallel = None
        self.compiled = None
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            e.model.use_global_batch_norm()
            self.data_parallel = DistributedDataParallel(
                self.objective, device_ids=[e.device.index] if e.device.type == "cuda" else None)
            if compile:
                warnings.warn("torch_compile is for single-process training; distributed training runs eagerly",
                              stacklevel=3)
        elif compile:
            self.compiled = compile_objective(self.objective)

    def device_data(self, dataset) -> DeviceData:
        e = self.estimator
        return DeviceData.from_dataset(dataset, e.views, e.language_views, e.device)

    # -- one batch ------------------------------------------------------------------------------
    def batch_terms(self, data: DeviceData, batch_host: np.ndarray) -> dict[str, torch.Tensor]:
        """Loss terms of one global batch: this rank's sums and the global InfoNCE.

        Every view of every tuple goes through the network together; the views a tuple lacks
        are masked out of the batch statistics and of every term.  Single process: the whole
        batch.  Distributed: this rank's contiguous slice of it; the noise of the whole batch
        is drawn on every rank (same seed), batch norm spans all ranks and thetas are
        all-gathered for InfoNCE, so the terms equal one big batch's.
        """
        e, dist_info = self.estimator, self.distributed
        training = e.model.training
        if dist_info:
            bounds = dist_info.slice_bounds(len(batch_host))
            rank = dist_info.rank
        else:
            bounds, rank = (0, len(batch_host)), 0
        local_host = batch_host[bounds[rank]:bounds[rank + 1]]
        batch = torch.from_numpy(local_host).to(e.device)
        mask_host = data.mask[local_host]  # (b, V) on the host: no device sync to plan the batch
        # (V, b) view mask; None when every tuple has every view (one fused batch norm, no
        # masking, nothing copied to the device).  Ranks always pass the mask: their batch-norm
        # all_reduce must have the same shape everywhere.
        present = None if mask_host.all() and not dist_info else \
            torch.from_numpy(np.ascontiguousarray(mask_host.T)).to(e.device)
        embeddings = [x.index_select(0, batch) for x in data.embeddings]
        # Noise for the whole global batch (the same draw on every rank), this rank's rows.
        noise = torch.randn(len(e.views), len(batch_host), e.n_components,
                            device=e.device)[:, bounds[rank]:bounds[rank + 1]]
        dense = None
        if e.inference_input == "combined":  # each language's network reads its words too
            dense = data.bow.dense(batch, local_host)
            for a, words in zip(self.language_positions, data.bow.split(dense)):
                embeddings[a] = torch.cat([embeddings[a], words], dim=1)
        if self.compiled is not None and training:
            dense = data.bow.dense(batch, local_host) if dense is None else dense
            try:
                return self.compiled(embeddings, noise, dense, present)
            except torch._dynamo.exc.TorchDynamoException as error:  # e.g. no C++ compiler
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:300]}); "
                              "training continues without it", stacklevel=2)
                self.compiled = None
        # With the combined input the batch's words are dense already: reconstruction reads them.
        bow = dense if dense is not None else data.bow.entries(batch, local_host)
        if not dist_info:
            return self.objective(embeddings, noise, bow, present)
        global_mask = data.mask[batch_host]
        global_present = None if global_mask.all() else \
            torch.from_numpy(np.ascontiguousarray(global_mask.T)).to(e.device)
        step = self.data_parallel if training else self.objective
        return step(embeddings, noise, bow, present, lambda theta: gather_batch(theta, bounds), global_present)

    # -- one epoch -----------------------------------------------------------------------------
    def run_epoch(self, data: DeviceData, generator: torch.Generator | None, train: bool) -> dict[str, float]:
        e = self.estimator
        e.model.train(train)
        keys = [*TERMS, "loss"]
        totals = torch.zeros(len(keys), device=e.device)  # summed on the device: no sync per step
        batches = batch_indices(data.n, e.batch_size, self.world, generator, shuffle=train)
        # Outside topic_epochs the topics stay fixed; e.nn_epoch counts from 0, also on resuming.
        topics_fixed = train and e.nn_epoch is not None and not topics_train(e, e.nn_epoch)
        # Fixed topics need no gradient: single-process, backward skips theirs (DDP expects a
        # gradient for every parameter it was built with, so there it is computed and dropped).
        skip_topic_gradient = topics_fixed and not self.distributed
        if skip_topic_gradient:
            e.model.topic_words.requires_grad_(False)
        with torch.set_grad_enabled(train):
            try:
                self._run_batches(data, batches, totals, keys,
                                  drop_topic_gradient=topics_fixed and not skip_topic_gradient)
            finally:
                if skip_topic_gradient:
                    e.model.topic_words.requires_grad_(True)
        if self.distributed:
            totals = self.distributed.reduce_totals(totals)
        values = dict(zip(keys, totals.tolist()))  # one host sync per epoch
        # Sums over tuples are reported per tuple; the contrastive term (a mean per batch) as
        # its mean over batches.
        out = {key: values[key] / data.n for key in ("loss", "reconstruction", "prior_kl", "pair_kl")}
        out["contrastive"] = values["contrastive"] / max(len(batches), 1)
        if not all(math.isfinite(v) for v in out.values()):
            raise FloatingPointError(
                f"the loss became {out} (not finite); lower lr, check the embeddings' scale, or "
                "use similarity='cosine'")
        return out

    def _run_batches(self, data: DeviceData, batches, totals: torch.Tensor, keys: list[str],
                     drop_topic_gradient: bool):
        """One epoch's batches; each one's terms added to ``totals`` (and a step when training)."""
        e = self.estimator
        for batch_host in batches:
            terms = self.batch_terms(data, batch_host)
            if e.model.training:
                if not terms["loss"].requires_grad:
                    raise ValueError(f"the loss of this {len(e.views)}-view model has no term with a weight "
                                     f"above 0 (loss_weights {e.weights}): nothing to train")
                e.optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if drop_topic_gradient:  # DDP computed it: dropped, the optimizer leaves the topics as they are
                    e.model.topic_words.grad = None
                e.optimizer.step()
            totals += torch.stack([terms[key].detach() for key in keys])

    # -- the fit -------------------------------------------------------------------------------
    def run(self, train_dataset, validation_dataset, seed: int, patience: int, delta: float, verbose: bool,
            progress_bar: bool, checkpoint_dir: str | os.PathLike | None, checkpoint_every: int,
            resume_from: str | os.PathLike | None) -> None:
        """Every epoch from the first (or the checkpoint's) to ``num_epochs`` or early stopping;
        the model ends with the best validation epoch's weights, if any."""
        e = self.estimator
        main = e.is_main_process
        progress_bar, verbose = progress_bar and main, verbose and main
        generator = torch.Generator()
        generator.manual_seed(seed)
        torch.manual_seed(seed)
        train_data = self.device_data(train_dataset)
        val_data = self.device_data(validation_dataset) if validation_dataset is not None else None
        stopping = EarlyStopping(patience=patience, delta=delta)
        first_epoch = 0
        digests = {}
        if checkpoint_dir is not None or resume_from is not None:
            digests["train"] = dataset_digest(train_dataset, e.views)
            if validation_dataset is not None:
                digests["validation"] = dataset_digest(validation_dataset, e.views)
        if resume_from is not None:
            first_epoch = restore_checkpoint(e, resume_from, generator, digests, stopping)
            if val_data is not None and stopping.should_stop:
                first_epoch = e.num_epochs  # that run had already stopped early
        bar = tqdm(range(first_epoch, e.num_epochs), disable=not progress_bar, desc="M3LTM", leave=True,
                   initial=first_epoch, total=e.num_epochs)
        for epoch in bar:
            e.nn_epoch = epoch
            start = time.perf_counter()
            record = {"epoch": epoch + 1, **self.run_epoch(train_data, generator, train=True)}
            if not math.isfinite(record["loss"]):
                self.diverged(f"epoch {epoch + 1}'s loss is {record['loss']}", checkpoint_dir)
            if e.scheduler is not None:
                e.scheduler.step(record["loss"])
            if val_data is not None:
                val = self.run_epoch(val_data, None, train=False)
                record.update({f"val_{k}": v for k, v in val.items()})
            record["seconds"] = time.perf_counter() - start
            e.history.append(record)
            e.best_loss_train = min(e.best_loss_train, record["loss"])
            bar.set_postfix(loss=f"{record['loss']:.2f}",
                            **({"val": f"{record['val_loss']:.2f}"} if val_data is not None else {}))
            if verbose:
                print(_format_record(record, e.num_epochs))
            if val_data is not None:
                stopping.update(record["val_loss"], e.model)
            if checkpoint_dir is not None and main and (
                    (epoch + 1) % checkpoint_every == 0 or epoch + 1 == e.num_epochs):
                write_checkpoint(e, checkpoint_dir, epoch + 1, generator, stopping, digests)
            if val_data is not None and stopping.should_stop:
                if verbose:
                    print(f"Early stopping after epoch {epoch + 1}; keeping the weights of the best epoch")
                break
        bar.close()
        if stopping.best_state is not None:
            e.model.load_state_dict(stopping.best_state)
        bad = check_finite(e.model.state_dict())
        if bad:
            self.diverged(f"after the last step {', '.join(bad)} hold NaN or infinity", checkpoint_dir)

    def diverged(self, what: str, checkpoint_dir: Any) -> None:
        where = (f"; the checkpoint in {checkpoint_dir} holds the last finite epoch" if checkpoint_dir is not None
                 else "")
        raise FloatingPointError(f"training diverged: {what}. Lower lr (now {self.estimator.lr}) or the "
                                 f"contrastive weight{where}")


def _format_record(record: dict, num_epochs: int) -> str:
    terms = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds"))
    return f"Epoch [{record['epoch']}/{num_epochs}] {terms} ({record['seconds']:.2f}s)"
