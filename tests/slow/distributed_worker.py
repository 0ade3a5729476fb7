"""Run by tests/slow/test_distributed.py under `torchrun --standalone --nproc_per_node=2`."""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_distributed import GLOBAL_BATCH, STEP_SETTINGS, make_model, make_train  # noqa: E402

from ctm_m3l.training import FitLoop, bind, setup_distributed  # noqa: E402


def one_step(out: Path) -> None:
    model = make_model(**STEP_SETTINGS)
    model._distributed, model.device = setup_distributed(model.device)
    train = make_train()
    bind(model, train)
    loop = FitLoop(model, distributed=model._distributed)  # global batch norm, DDP around the objective
    data = loop.device_data(train)
    torch.manual_seed(0)
    terms = loop.batch_terms(data, np.arange(GLOBAL_BATCH))
    terms["loss"].backward()
    loss = terms["loss"].detach().clone()
    dist.all_reduce(loss)
    if dist.get_rank() == 0:
        tensors = {f"grad.{name}": p.grad.contiguous() for name, p in model.model.named_parameters()}
        tensors["loss"] = loss / dist.get_world_size()
        tensors["contrastive"] = terms["contrastive"].detach()
        save_file(tensors, str(out / "step.safetensors"))


def fit(out: Path) -> None:
    model = make_model(num_epochs=3)
    model.fit(make_train(), distributed=True, progress_bar=False, save_dir=out / "model")


if __name__ == "__main__":
    out, mode = Path(sys.argv[1]), sys.argv[2]
    {"step": one_step, "fit": fit}[mode](out)
    dist.destroy_process_group()
