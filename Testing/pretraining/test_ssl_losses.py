"""The SSL losses against independent computations: Sinkhorn-Knopp sums and distributed equivalence, DINO
and iBOT against brute-force loops over pairs and tokens, their values at initialisation, KoLeo of an
orthonormal set, Gram loss invariances."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from DualDINOv3Lib.pretraining.dino_loss import dino_loss
from DualDINOv3Lib.pretraining.gram_loss import gram_loss, gram_matrices, resize_patch_tokens
from DualDINOv3Lib.pretraining.heads import DINOHead
from DualDINOv3Lib.pretraining.ibot_loss import ibot_loss
from DualDINOv3Lib.pretraining.koleo_loss import koleo_loss, koleo_per_crop
from DualDINOv3Lib.pretraining.sinkhorn import sinkhorn_knopp

# --- Sinkhorn-Knopp -------------------------------------------------------------------------------------


def test_sinkhorn_rows_sum_to_one_and_prototypes_to_b_over_k():
    logits = torch.randn(12, 40, dtype=torch.float64) * 0.1
    q = sinkhorn_knopp(logits, 0.04, n_iterations=3)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(12, dtype=torch.float32))
    # after the last column step the prototype totals are B/K up to the unconverged rest: a longer run
    # makes them exact
    q = sinkhorn_knopp(logits, 0.04, n_iterations=200)
    torch.testing.assert_close(q.sum(dim=0), torch.full((40,), 12 / 40), atol=1e-5, rtol=0)


def test_sinkhorn_of_uniform_logits_is_uniform():
    q = sinkhorn_knopp(torch.full((6, 32), 3.7), 0.04)
    torch.testing.assert_close(q, torch.full((6, 32), 1 / 32))


def reference_sinkhorn(logits: torch.Tensor, temp: float, n_iterations: int = 3) -> torch.Tensor:
    """The textbook algorithm in float64 with no max subtraction (the values used here do not overflow)."""
    q = torch.exp(logits.double() / temp).t()
    k, b = q.shape
    q = q / q.sum()
    for _ in range(n_iterations):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).t()


def test_sinkhorn_equals_the_textbook_algorithm_and_survives_large_logits():
    logits = torch.randn(8, 16)
    torch.testing.assert_close(sinkhorn_knopp(logits, 0.07), reference_sinkhorn(logits, 0.07).float())
    # logits of 10 at T = 0.04 overflow exp() in float32: a global shift must give the same answer
    big = sinkhorn_knopp(logits + 10.0, 0.04)
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, reference_sinkhorn(logits, 0.04).float(), atol=1e-5, rtol=1e-4)


def _sinkhorn_worker(rank: int, world: int, init_file: str, logits: torch.Tensor, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        half = logits.shape[0] // world
        out[rank] = sinkhorn_knopp(logits[rank * half : (rank + 1) * half], 0.05).clone()
    finally:
        dist.destroy_process_group()


def test_sinkhorn_over_two_gloo_processes_equals_one_process_on_the_whole_batch(tmp_path):
    logits = torch.randn(10, 24) * 2
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_sinkhorn_worker, args=(2, str(tmp_path / "init"), logits, out), nprocs=2, join=True)
        parts = [out[0], out[1]]
    torch.testing.assert_close(torch.cat(parts), sinkhorn_knopp(logits, 0.05))


# --- DINO and iBOT --------------------------------------------------------------------------------------


def brute_force_dino(student_global, student_local, teacher, temp):
    terms = []
    crops = list(student_global) + list(student_local)
    for s, crop in enumerate(crops):
        for t in range(teacher.shape[0]):
            if s < student_global.shape[0] and s == t:
                continue
            for b in range(crop.shape[0]):
                log_p = torch.log_softmax(crop[b].double() / temp, dim=0)
                terms.append(-(teacher[t, b].double() * log_p).sum())
    return torch.stack(terms).mean()


def test_dino_loss_equals_a_loop_over_pairs():
    g, loc = torch.randn(2, 5, 30), torch.randn(6, 5, 30)
    teacher = torch.softmax(torch.randn(2, 5, 30), dim=-1)
    loss = dino_loss(g, loc, teacher, 0.1)
    torch.testing.assert_close(loss.total.double(), brute_force_dino(g, loc, teacher, 0.1))
    # pair-count weights: 2 global pairs and 12 local pairs
    torch.testing.assert_close(loss.total, (2 * loss.global_term + 12 * loss.local_term) / 14)
    only_global = dino_loss(g, None, teacher, 0.1)
    torch.testing.assert_close(only_global.total.double(), brute_force_dino(g, loc[:0], teacher, 0.1))


def test_ibot_loss_equals_a_loop_over_masked_tokens():
    masks = torch.zeros(4, 9, dtype=torch.bool)
    masks[0, [1, 2, 5]] = True
    masks[2, [0, 8]] = True
    m = int(masks.sum())
    student, teacher = torch.randn(m, 20), torch.softmax(torch.randn(m, 20), dim=-1)
    expected, row = 0.0, 0
    for image in range(4):
        n = int(masks[image].sum())
        for _ in range(n):
            expected += -(teacher[row].double() * torch.log_softmax(student[row].double() / 0.1, 0)).sum() / n
            row += 1
    torch.testing.assert_close(ibot_loss(student, teacher, masks, 0.1).double(), expected / 4)


@pytest.mark.parametrize("k", [64, 1024])
def test_losses_at_initialisation_are_ln_k_and_half_ln_k(k):
    torch.manual_seed(1)
    head = DINOHead(32, k, hidden_dim=64, bottleneck_dim=16)
    with torch.no_grad():
        head.last_layer.weight.mul_(1e-3)  # near-uniform outputs, as the tiny trunc-normal init nearly gives
        x = torch.randn(2 * 8, 32)
        logits = head(x)
        teacher = sinkhorn_knopp(logits, 0.04)
        loss = dino_loss(logits.view(2, 8, k), None, teacher.view(2, 8, k), 0.1)
        assert loss.total.item() == pytest.approx(math.log(k), rel=1e-3)
        masks = torch.zeros(16, 10, dtype=torch.bool)
        masks[:8, :4] = True  # half of the crops masked
        patch = head(torch.randn(int(masks.sum()), 32))
        assert ibot_loss(patch, sinkhorn_knopp(patch, 0.04), masks).item() == pytest.approx(0.5 * math.log(k), rel=1e-3)


# --- KoLeo ----------------------------------------------------------------------------------------------


def test_koleo_of_an_orthonormal_set_is_minus_ln_sqrt2_and_ignores_row_scaling():
    q, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
    basis = q[:10].float()
    assert koleo_loss(basis).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-5)
    scaled = basis * torch.rand(10, 1).add(0.1).mul(50)
    assert koleo_loss(scaled).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-5)


def test_koleo_equals_a_loop_and_is_bounded_for_duplicate_samples():
    x = torch.randn(7, 5)
    xn = x / x.norm(dim=1, keepdim=True)
    expected = 0.0
    for i in range(7):
        d = min((xn[i] - xn[j]).norm().item() for j in range(7) if j != i)
        expected -= math.log(d + 1e-8) / 7
    assert koleo_loss(x).item() == pytest.approx(expected, rel=1e-5)
    dup = torch.cat([x, x[:1]])
    dup.requires_grad_(True)
    loss = koleo_loss(dup, min_distance=1e-3)
    loss.backward()
    # each sample's term is at most -log(min_distance); the two duplicates reach it, with a finite gradient
    assert math.isfinite(loss.item()) and loss.item() <= -math.log(1e-3) and torch.isfinite(dup.grad).all()
    assert loss.item() > 2 * -math.log(1e-3) / 8 - 1
    # near-duplicates are still pushed apart (a hard clamp would give no gradient here)
    near = torch.stack([x[0], x[0] + 1e-4 * torch.randn(5)]).requires_grad_(True)
    koleo_loss(near, min_distance=1e-3).backward()
    assert near.grad.abs().sum() > 0
    per_crop = koleo_per_crop(torch.cat([x, 2 * x]), 2)
    assert per_crop.item() == pytest.approx(expected, rel=1e-5)


# --- Gram -----------------------------------------------------------------------------------------------


def test_gram_loss_is_zero_for_identical_features_and_invariant_to_a_shared_rotation():
    s, t = torch.randn(3, 12, 8), torch.randn(3, 12, 8)
    assert gram_loss(s, s).item() == 0.0
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    torch.testing.assert_close(gram_loss(s @ rotation, t @ rotation), gram_loss(s, t))
    # the teacher's own rotation does not matter either (each side's Gram matrix is rotation-free)
    torch.testing.assert_close(gram_loss(s, t @ rotation), gram_loss(s, t))
    sn, tn = torch.nn.functional.normalize(s, dim=-1), torch.nn.functional.normalize(t, dim=-1)
    expected = ((sn @ sn.transpose(1, 2) - tn @ tn.transpose(1, 2)) ** 2).mean()
    torch.testing.assert_close(gram_loss(s, t), expected)
    assert gram_matrices(s).shape == (3, 12, 12)


def test_gram_teacher_features_are_resized_to_the_student_grid():
    tokens = torch.randn(2, 8 * 6, 4)
    resized = resize_patch_tokens(tokens, (8, 6), (4, 3))
    assert resized.shape == (2, 12, 4)
    constant = torch.ones(1, 16, 3) * torch.tensor([1.0, -2.0, 0.5])
    torch.testing.assert_close(resize_patch_tokens(constant, (4, 4), (2, 2)), constant[:, :4])
    assert resize_patch_tokens(tokens, (8, 6), (8, 6)) is tokens
