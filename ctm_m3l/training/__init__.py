"""How an M3LTM trains: the objective (Eq. 1), device data and batches, the epoch loop,
checkpoints, data-parallel and compiled training."""
from .batches import BagsOfWords, DeviceData, batch_indices
from .build import bind, build_network, check_compatible, check_fit_data, copy_topics, new_network
from .checkpoint import CHECKPOINT_FILE, EarlyStopping, checkpoint_epoch, restore_checkpoint, write_checkpoint
from .distributed import Distributed, setup_distributed
from .loop import FitLoop
from .objective import TERMS, Objective

__all__ = ["BagsOfWords", "DeviceData", "batch_indices", "bind", "build_network", "check_compatible", "check_fit_data",
           "copy_topics", "new_network",
           "CHECKPOINT_FILE", "EarlyStopping", "checkpoint_epoch", "restore_checkpoint", "write_checkpoint",
           "Distributed", "setup_distributed", "FitLoop", "TERMS", "Objective"]
