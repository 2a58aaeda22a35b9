import json
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainer.configs import LossConfig
from trainer.loss import (
    contrastive_loss,
    dual_encoder_loss,
    gather_no_grad,
    gather_with_grad,
    spread_out,
)


def _ce(logits_row, target):
    return -logits_row[target] + math.log(sum(math.exp(x) for x in logits_row))


def test_loss_equals_hand_computed_value():
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    c = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    s = 2.0
    # logits = s * q @ c.T, written out: q0.c0 = .8, q0.c1 = 0, q1.c0 = .96, q1.c1 = .8
    logits = [[s * 0.8, 0.0], [s * 0.96, s * 0.8]]
    rows = (_ce(logits[0], 0) + _ce(logits[1], 1)) / 2
    cols = (_ce([logits[0][0], logits[1][0]], 0) + _ce([logits[0][1], logits[1][1]], 1)) / 2
    contrastive = (rows + cols) / 2
    # Spread-out: both sets have one non-matching cosine, 0.6, in d=2:
    # M1 = .6, M2 = .36 < 1/d = .5, so each set contributes .6 ** 2.
    regulariser = 2 * 0.6**2
    out = dual_encoder_loss(q, c, logit_scale=torch.tensor(s), spread_out_weight=0.5)
    assert float(out.contrastive) == pytest.approx(contrastive, rel=1e-6)
    assert float(out.spread_out) == pytest.approx(regulariser, rel=1e-6)
    assert float(out.loss) == pytest.approx(contrastive + 0.5 * regulariser, rel=1e-6)
    assert float(out.accuracy) == 0.5  # q1 prefers c0


def test_spread_out_second_moment_term():
    # Collinear unit vectors in d=4: M1 = 1, M2 = 1 -> 1 + (1 - 1/4).
    x = torch.tensor([[1.0, 0, 0, 0], [2.0, 0, 0, 0], [0.5, 0, 0, 0]])
    assert float(spread_out(x)) == pytest.approx(1 + 0.75)
    # Orthogonal: nothing to spread.
    assert float(spread_out(torch.eye(4))) == 0.0
    assert float(spread_out(torch.ones(1, 4))) == 0.0


def test_same_group_pairs_are_not_negatives():
    torch.manual_seed(0)
    q, c = torch.randn(3, 4), torch.randn(3, 4)
    groups = torch.tensor([5, 7, 7])
    scale = 3.0
    sim = (scale * q @ c.T).tolist()
    allowed = [[j for j in range(3) if j == i or groups[i] != groups[j]] for i in range(3)]
    rows = sum(
        -sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in allowed[i])) for i in range(3)
    )
    cols = sum(
        -sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in allowed[j])) for j in range(3)
    )
    loss, _ = contrastive_loss(q, c, scale, groups)
    assert float(loss) == pytest.approx((rows / 3 + cols / 3) / 2, rel=1e-5)
    unmasked, _ = contrastive_loss(q, c, scale)
    assert float(unmasked) != pytest.approx(float(loss))


def test_loss_config_validation():
    with pytest.raises(ValueError):
        LossConfig(spread_out_weight=-1)
    with pytest.raises(ValueError):
        contrastive_loss(torch.zeros(2, 3), torch.zeros(3, 3), 1.0)


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x
    assert gather_no_grad(x) is x


# --- the DDP gather, for real: 2 processes, gloo --------------------------------------------

SPLIT = (3, 2)  # unequal row counts per rank, like token-budget batches


def _data():
    g = torch.Generator().manual_seed(7)
    q = torch.nn.functional.normalize(torch.randn(sum(SPLIT), 8, generator=g), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(sum(SPLIT), 8, generator=g), dim=-1)
    groups = torch.tensor([1, 2, 3, 3, 4])
    return q, c, groups


def _rank_main(rank, world, store, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        q, c, groups = _data()
        lo = sum(SPLIT[:rank])
        mine = slice(lo, lo + SPLIT[rank])
        q_local = q[mine].clone().requires_grad_(True)
        c_local = c[mine].clone().requires_grad_(True)
        out = dual_encoder_loss(
            gather_with_grad(q_local),
            gather_with_grad(c_local),
            logit_scale=torch.tensor(10.0),
            groups=gather_no_grad(groups[mine]),
        )
        out.loss.backward()
        result = {
            "loss": float(out.loss),
            "q_grad": q_local.grad.tolist(),
            "c_grad": c_local.grad.tolist(),
        }
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_ddp_gather_matches_single_process(tmp_path):
    world = len(SPLIT)
    mp.spawn(_rank_main, args=(world, str(tmp_path / "store"), str(tmp_path)), nprocs=world)
    q, c, groups = _data()
    q, c = q.clone().requires_grad_(True), c.clone().requires_grad_(True)
    out = dual_encoder_loss(q, c, logit_scale=torch.tensor(10.0), groups=groups)
    out.loss.backward()
    lo = 0
    for rank, n in enumerate(SPLIT):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["loss"] == pytest.approx(float(out.loss.detach()), rel=1e-6)
        # Every rank backpropagates the same global loss and the gather sums the
        # world's copies: world x the single-process gradient, which DDP's
        # averaging of parameter gradients divides back.
        assert torch.allclose(torch.tensor(got["q_grad"]), world * q.grad[lo : lo + n], atol=1e-6)
        assert torch.allclose(torch.tensor(got["c_grad"]), world * c.grad[lo : lo + n], atol=1e-6)
        lo += n
