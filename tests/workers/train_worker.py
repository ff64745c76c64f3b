"""A meta-training run in its own process, for the kill-and-resume and the torchrun tests.

python tests/workers/train_worker.py MODEL_DIR OUT_FILE [--checkpoint-dir D] [--resume] [--pause-after K]
    [--meta-batch-size B] [--steps N]

Trains ProtoNet (encoder dropout on) on the toy corpus with dev episodes and
writes the final learner weights (safetensors) and the result (JSON) to
OUT_FILE(.json) from rank 0. ``--pause-after K`` prints ``PAUSED <step>`` after
step K and sleeps, so that the test can kill the process there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest's toy data

from conftest import toy_sentences  # noqa: E402

from metalearn_nlp.data import FewNERDSampler  # noqa: E402
from metalearn_nlp.distributed import init_distributed  # noqa: E402
from metalearn_nlp.encoders import load_encoder  # noqa: E402
from metalearn_nlp.learners import ProtoNet  # noqa: E402
from metalearn_nlp.training import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--checkpoint-dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--pause-after", type=int)
    parser.add_argument("--meta-batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    rank, _ = init_distributed("gloo")
    learner = ProtoNet(load_encoder(args.model, attn_implementation="eager"), dropout=0.1)
    sampler = FewNERDSampler(toy_sentences(120, seed=0), ways=3, shots=1, seed=4)
    dev = FewNERDSampler(toy_sentences(40, seed=3), ways=3, shots=1, seed=9).episodes(3)

    def pause(state, _learner):
        if args.pause_after is not None and state.step == args.pause_after and len(state.losses) == state.step:
            print(f"PAUSED {state.step}", flush=True)
            time.sleep(600)

    trainer = Trainer(learner, sampler, steps=args.steps, meta_batch_size=args.meta_batch_size, lr=3e-3,
                      dev_episodes=dev, eval_every=3, checkpoint_dir=args.checkpoint_dir, checkpoint_every=1,
                      progress=False, callback=pause)
    if args.resume:
        assert trainer.resume(), "nothing to resume"
    result = trainer.fit()
    if rank == 0:
        save_file({k: v.contiguous() for k, v in learner.state_dict().items()}, args.out)
        Path(args.out + ".json").write_text(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
