"""Run under ``torchrun`` by test_gradcache.py: one gradient-cache backward per rank.

Each rank writes its batch's ids and the (all-reduced) gradients it ends
with; the test compares them with a single-process full-batch step.
"""

import json
import sys

from safetensors.torch import save_file

from trainer.train import Trainer, debug_config


def main(shards: str, out: str, chunk: int) -> None:
    config = debug_config(shards, f"{out}/run", precision="fp32", device="cpu", cache_chunk=chunk)
    trainer = Trainer(config)
    rank = trainer.dist.rank
    batch = trainer.loader.next_batch()
    trainer.model.train()
    trainer.backward([batch])
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
    save_file({n: g.contiguous() for n, g in grads.items()}, f"{out}/grads-{rank}.safetensors")
    with open(f"{out}/batch-{rank}.json", "w") as f:
        json.dump(batch.ids, f)
    trainer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
