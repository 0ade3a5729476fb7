"""The paper's experiments on Multi30k: Tables 1, 2 and 4 and the topic-number and batch-size
ablations (Figures 3-6), with several seeds, as JSON, Markdown tables and line plots
(``config``: the plan; ``runner``: the ledger and the workers; ``report``: tables and figures)."""
from .config import EXPERIMENTS, ReproduceConfig, m3l_loss_label
from .runner import append_run, read_runs, reproduce, run_system, software

__all__ = ["EXPERIMENTS", "ReproduceConfig", "m3l_loss_label", "reproduce", "run_system", "read_runs", "append_run",
           "software"]
