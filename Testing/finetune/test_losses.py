"""Dice + cross-entropy loss: values against hand computation, perfect vs random predictions, batch vs
per-sample Dice, ignoring absent classes, gradients, and a tiny model that learns a fixed batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from DualDINOv3Lib.errors import ConfigError, DataError
from DualDINOv3Lib.finetune import DiceCELoss, LossTerms, soft_dice_scores


def labels_and_logits(batch: int = 2, classes: int = 3, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros((batch, size, size), dtype=torch.long)
    labels[:, 2:8, 3:9] = 1
    labels[:, 10:14, 9:15] = 2
    logits = torch.randn((batch, classes, size, size), generator=g)
    return labels, logits


def perfect_logits(labels: torch.Tensor, classes: int = 3, margin: float = 20.0) -> torch.Tensor:
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float() * margin


def test_perfect_prediction_scores_near_zero_and_random_scores_high():
    labels, random_logits = labels_and_logits()
    loss = DiceCELoss()
    perfect = loss(perfect_logits(labels), labels)
    assert isinstance(perfect, LossTerms)
    assert perfect.total.item() < 1e-4 and perfect.dice.item() < 1e-4 and perfect.ce.item() < 1e-4
    torch.testing.assert_close(perfect.class_dice, torch.ones(2))
    noisy = loss(random_logits, labels)
    assert noisy.total.item() > 1.0 and noisy.dice.item() > 0.5 and noisy.ce.item() > 0.5
    # wrong but confident: worse still
    wrong = loss(perfect_logits((labels + 1) % 3), labels)
    assert wrong.total.item() > noisy.total.item()


def test_value_matches_a_hand_computation():
    # one sample, two classes, four pixels; truth [0, 1, 1, 0]
    labels = torch.tensor([[[0, 1], [1, 0]]])
    p1 = torch.tensor([0.2, 0.7, 0.6, 0.1])  # predicted probability of class 1 per pixel
    logits = torch.stack([torch.zeros(4), torch.log(p1 / (1 - p1))]).view(1, 2, 2, 2)
    terms = DiceCELoss(smooth=0.0)(logits, labels)
    dice = 2 * (0.7 + 0.6) / (p1.sum() + 2)
    ce = -(math.log(0.8) + math.log(0.7) + math.log(0.6) + math.log(0.9)) / 4
    torch.testing.assert_close(terms.dice, 1 - dice)
    torch.testing.assert_close(terms.ce, torch.tensor(ce))
    torch.testing.assert_close(terms.total, 1 - dice + ce)
    weighted = DiceCELoss(smooth=0.0, weight_dice=2.0, weight_ce=0.5)(logits, labels)
    torch.testing.assert_close(weighted.total, 2 * (1 - dice) + 0.5 * ce)
    # the smooth term enters numerator and denominator
    smoothed = DiceCELoss(smooth=1.0)(logits, labels)
    torch.testing.assert_close(smoothed.dice, 1 - (2 * 1.3 + 1) / (p1.sum() + 2 + 1))


def test_batch_dice_pools_pixels_over_the_batch():
    labels, logits = labels_and_logits(batch=3)
    labels[1, 10:14, 9:15] = 0  # sample 1 has no class 2
    logits[1, 2] -= 3  # and predicts little of it
    probabilities = torch.softmax(logits, dim=1)
    pooled, truth = soft_dice_scores(probabilities, labels, batch_dice=True)
    per_sample, per_sample_truth = soft_dice_scores(probabilities, labels, batch_dice=False)
    assert pooled.shape == (3,) and per_sample.shape == (3, 3)
    assert truth[2] == 2 * 24 and per_sample_truth[1, 2] == 0
    one_hot = F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    expected = (2 * (probabilities * one_hot).sum((0, 2, 3)) + 1e-5) / (
        probabilities.sum((0, 2, 3)) + one_hot.sum((0, 2, 3)) + 1e-5
    )
    torch.testing.assert_close(pooled, expected)
    batch_loss = DiceCELoss(batch_dice=True)(logits, labels)
    sample_loss = DiceCELoss(batch_dice=False)(logits, labels)
    torch.testing.assert_close(batch_loss.dice, 1 - pooled[1:].mean())
    torch.testing.assert_close(sample_loss.dice, 1 - per_sample[:, 1:].mean())
    assert not torch.isclose(batch_loss.dice, sample_loss.dice)
    # one sample: both are the same
    single = [DiceCELoss(batch_dice=b)(logits[:1], labels[:1]).total for b in (True, False)]
    torch.testing.assert_close(single[0], single[1])


def test_absent_classes_can_be_left_out_of_the_dice_mean():
    labels, logits = labels_and_logits()
    labels[labels == 2] = 0  # class 2 absent from the whole batch
    scored = DiceCELoss()(logits, labels)
    ignored = DiceCELoss(ignore_absent_classes=True)(logits, labels)
    dice, _ = soft_dice_scores(torch.softmax(logits, 1), labels)
    torch.testing.assert_close(ignored.dice, 1 - dice[1])
    torch.testing.assert_close(scored.dice, 1 - dice[1:].mean())
    assert ignored.dice < scored.dice  # the absent class's Dice of ~0 no longer counts
    assert torch.isnan(ignored.class_dice[1]) and not torch.isnan(ignored.class_dice[0])
    # nothing to score at all: Dice term 0, cross-entropy still trains
    background = torch.zeros_like(labels)
    only_ce = DiceCELoss(ignore_absent_classes=True)(logits.requires_grad_(), background)
    assert only_ce.dice.item() == 0.0
    torch.testing.assert_close(only_ce.total, only_ce.ce)
    only_ce.total.backward()
    assert logits.grad.abs().sum() > 0


def test_gradients_flow_and_low_precision_logits_work():
    labels, logits = labels_and_logits()
    logits.requires_grad_(True)
    terms = DiceCELoss()(logits, labels)
    terms.total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert not terms.class_dice.requires_grad
    # the Dice term alone has a gradient too
    logits.grad = None
    DiceCELoss(weight_ce=0.0)(logits, labels).total.backward()
    assert logits.grad.abs().sum() > 0
    half = DiceCELoss()(logits.detach().bfloat16(), labels)
    assert half.total.dtype == torch.float32
    torch.testing.assert_close(half.total, terms.total.detach(), atol=0.02, rtol=0)


def test_a_tiny_model_learns_a_fixed_batch():
    g = torch.Generator().manual_seed(0)
    labels, _ = labels_and_logits(batch=4, size=24)
    images = torch.stack([labels.float(), (labels == 2).float()], dim=1) + 0.3 * torch.randn(
        (4, 2, 24, 24), generator=g
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    loss = DiceCELoss()
    history = []
    for _ in range(40):
        optimiser.zero_grad()
        terms = loss(model(images), labels)
        terms.total.backward()
        optimiser.step()
        history.append(terms.total.item())
    assert history[-1] < 0.3 * history[0]
    with torch.no_grad():
        prediction = model(images).argmax(dim=1)
    for c in (1, 2):  # hard Dice of the learnt segmentation
        overlap = ((prediction == c) & (labels == c)).sum()
        assert 2 * overlap / ((prediction == c).sum() + (labels == c).sum()) > 0.9


def test_bad_input_and_settings_are_refused():
    labels, logits = labels_and_logits()
    loss = DiceCELoss()
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\] for 3 classes"):
        loss(logits, labels + 1)
    with pytest.raises(DataError, match=r"\(B, H, W\)"):
        loss(logits, labels[:, :8])
    with pytest.raises(DataError, match="integer class indices"):
        loss(logits, labels.float())
    with pytest.raises(DataError, match="at least 2 classes"):
        loss(logits[:, :1], torch.zeros_like(labels))
    with pytest.raises(DataError, match="floating-point logits"):
        loss(logits[0], labels)
    with pytest.raises(ConfigError, match="weights"):
        DiceCELoss(weight_dice=0, weight_ce=0)
    with pytest.raises(ConfigError, match="smoothing"):
        DiceCELoss(smooth=-1)
