"""A meta-training run for the distributed tests: ``python tests/dist_worker.py RUN_DIR OUT ITERATIONS RULE ENGINE [SLEEP]``.

Started directly (one process) or under ``torchrun`` (several); rank 0 saves the final
parameters to ``OUT``. ``SLEEP`` seconds are added to every meta-step, so a test can kill a
rank in the middle of a run.
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maml_probe import train  # noqa: E402
from maml_probe.config import TrainConfig  # noqa: E402
from maml_probe.distributed import current_world, init_from_env  # noqa: E402


def main() -> None:
    run_dir, out, iterations, rule, engine = sys.argv[1:6]
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    if pause:
        step = train.meta_step

        def slow_step(*args, **kwargs):
            time.sleep(pause)
            return step(*args, **kwargs)

        train.meta_step = slow_step
    torch.set_num_threads(1)
    init_from_env("cpu", timeout_s=30)
    cfg = TrainConfig(dataset="synthetic", dataset_kwargs={"dim": 6, "support": 8, "query": 8},
                      model="lr", rule=rule, meta_batch=5,
                      steps=2, alpha=0.3, meta_lr=0.05, outer_optimizer="adam",
                      iterations=int(iterations), dtype="float64", log_every=1, checkpoint_every=1,
                      eval_every=3, eval_tasks=7, engine=engine)
    result = train.meta_train(cfg, run_dir, progress=False)
    if current_world().is_main:
        state = {k: v.detach().clone() for k, v in result.learner.state_dict().items()}
        torch.save({"params": state, "history": result.history.to_dict("list")}, out)


if __name__ == "__main__":
    main()
