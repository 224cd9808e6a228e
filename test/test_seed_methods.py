"""CAL's parts (seed 002): its heatmap and offset targets, eq. 9's decoding, the Gaussian mixture of Algorithm 1
and the second-stage masks; and the super-resolution cascade's back-projection (seed 001)."""

from __future__ import annotations

import math

import pytest
import torch

from exlow_pose_training.models import build_model
from exlow_pose_training.models.cal import (
    CALConfig,
    cal_loss,
    decode,
    fit_gaussian_mixture,
    heatmap_pixel_coordinates,
    mixed_gaussian_masks,
)
from exlow_pose_training.models.super_resolution import back_projection_error


def exact_maps(keypoints: torch.Tensor, config: CALConfig, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps equal to CAL's targets, written independently of cal_loss: a Gaussian in a disk, offsets to the joint."""
    centres = heatmap_pixel_coordinates(keypoints, size)
    rows, columns = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                                   indexing="ij")
    dx = centres[..., 0, None, None] - columns
    dy = centres[..., 1, None, None] - rows
    squared = dx ** 2 + dy ** 2
    heatmaps = (squared <= config.radius ** 2) * torch.exp(-squared / (2 * config.sigma ** 2))
    return heatmaps, torch.stack([dx, dy], dim=-3) / config.radius


def test_decoding_adds_the_offset_at_the_peak_in_radius_units():
    heatmaps = torch.zeros(1, 1, 17, 16, 16)
    offsets = torch.zeros(1, 1, 17, 2, 16, 16)
    heatmaps[0, 0, 3, 9, 5] = 0.9   # row 9, column 5
    heatmaps[0, 0, 3, 2, 2] = 0.5   # a lower second peak is ignored
    offsets[0, 0, 3, :, 9, 5] = torch.tensor([0.25, -0.5])
    poses, peaks = decode(heatmaps, offsets, radius=2.0, sigma=1.0)
    # x = 5 + 0.25 * 2 = 5.5, y = 9 - 0.5 * 2 = 8 in pixel indices; pixel centres sit at index + 0.5 of 16 px.
    torch.testing.assert_close(poses[0, 0, 3], torch.tensor([(5.5 + 0.5) / 16 * 2 - 1, (8 + 0.5) / 16 * 2 - 1]))
    # The peak over the target's value at the offset's distance, capped at half a pixel diagonal (d^2 <= 0.5).
    assert float(peaks[0, 0, 3]) == pytest.approx(0.9 / math.exp(-0.5 / 2))
    offsets[0, 0, 3, :, 9, 5] = torch.tensor([0.1, 0.2])  # d^2 = 0.2^2 + 0.4^2
    assert float(decode(heatmaps, offsets, 2.0, 1.0)[1][0, 0, 3]) == pytest.approx(0.9 / math.exp(-0.2 / 2))


@pytest.mark.parametrize("second_stage", [False, True])
def test_the_targets_give_zero_loss_and_decode_back_to_the_labels(second_stage):
    config = CALConfig()
    generator = torch.Generator().manual_seed(0)
    keypoints = torch.rand(4, 1, 17, 2, generator=generator) * 1.6 - 0.8
    mask = torch.rand(4, 1, 17, generator=generator) > 0.2
    heatmaps, offsets = exact_maps(keypoints, config)
    assert float(cal_loss(heatmaps, offsets, keypoints, mask, config, second_stage)) == pytest.approx(0, abs=1e-5)
    poses, peaks = decode(heatmaps, offsets, config.radius, config.sigma)
    torch.testing.assert_close(poses, keypoints, atol=1e-5, rtol=0)
    # A perfect heatmap is a sure joint, whatever the joint's sub-pixel phase.
    torch.testing.assert_close(peaks, torch.ones_like(peaks), atol=1e-5, rtol=0)
    # A wrong offset, or a heatmap off its target, costs; unlabelled joints cost nothing.
    moved = offsets.clone()
    moved[mask] += 0.3
    assert float(cal_loss(heatmaps, moved, keypoints, mask, config, second_stage)) > 1.0
    unlabelled = offsets.clone()
    unlabelled[~mask] += 0.3
    assert float(cal_loss(heatmaps, unlabelled, keypoints, mask, config, second_stage)) == pytest.approx(0, abs=1e-5)


def test_second_stage_weighs_an_offset_error_by_the_fitted_displacement_density():
    """Exact maps put each argmax on the pixel nearest its joint; the displacements are the joints' sub-pixel
    phases. One wrong offset at one pixel then costs its L1 error times the Gaussian of those displacements
    (sample mean, covariance plus the floor), evaluated at joint - pixel: computed here by hand."""
    config = CALConfig()
    generator = torch.Generator().manual_seed(3)
    keypoints = torch.rand(2, 1, 17, 2, generator=generator) * 1.4 - 0.7
    mask = torch.ones(2, 1, 17, dtype=torch.bool)
    heatmaps, offsets = exact_maps(keypoints, config)
    centres = heatmap_pixel_coordinates(keypoints, 16).double()
    displacements = (centres - torch.round(centres)).reshape(-1, 2)
    mean = displacements.mean(dim=0)
    covariance = torch.cov(displacements.T, correction=0) + 0.1 * torch.eye(2, dtype=torch.float64)
    row, column = 7, 4
    offsets[1, 0, 5, :, row, column] += torch.tensor([0.3, -0.2])
    d = centres[1, 0, 5] - torch.tensor([column, row], dtype=torch.float64) - mean
    density = torch.exp(-0.5 * d @ torch.linalg.inv(covariance) @ d) / (2 * math.pi * torch.det(covariance).sqrt())
    expected = 0.5 * 1.0 * float(density)  # batch mean of 2 windows; L1 error 0.5; lambda 1
    assert float(cal_loss(heatmaps, offsets, keypoints, mask, config, True)) == pytest.approx(expected, rel=1e-4)
    # The first stage weighs the disk evenly instead: the error over the disk's pixel count, if the pixel is in it.
    inside = float(((centres[1, 0, 5] - torch.tensor([column, row], dtype=torch.float64)) ** 2).sum()) <= 4
    disk = int((((torch.arange(16.0)[:, None] - centres[1, 0, 5, 1]) ** 2
                 + (torch.arange(16.0)[None] - centres[1, 0, 5, 0]) ** 2) <= 4).sum())
    first = float(cal_loss(heatmaps, offsets, keypoints, mask, config, False))
    assert first == pytest.approx(0.5 * 0.5 / disk if inside else 0.0, rel=1e-4, abs=1e-7)


def test_gaussian_mixture_recovers_known_displacement_statistics():
    generator = torch.Generator().manual_seed(1)
    one = torch.randn(4000, 2, generator=generator) * torch.tensor([0.6, 0.9]) + torch.tensor([0.5, -0.3])
    weights, means, covariances = fit_gaussian_mixture(one, 1)
    torch.testing.assert_close(means[0].float(), torch.tensor([0.5, -0.3]), atol=0.05, rtol=0)
    # Each component's covariance carries the floor that keeps the masks from collapsing to a point.
    torch.testing.assert_close(torch.diagonal(covariances[0]).float(), torch.tensor([0.36 + 0.1, 0.81 + 0.1]),
                               atol=0.06, rtol=0)
    two = torch.cat([torch.randn(3000, 2, generator=generator) * 0.3 + torch.tensor([-2.0, 0.0]),
                     torch.randn(1000, 2, generator=generator) * 0.3 + torch.tensor([2.0, 1.0])])
    weights, means, _ = fit_gaussian_mixture(two, 2)
    order = means[:, 0].argsort()
    torch.testing.assert_close(means[order].float(), torch.tensor([[-2.0, 0.0], [2.0, 1.0]]), atol=0.06, rtol=0)
    torch.testing.assert_close(weights[order].float(), torch.tensor([0.75, 0.25]), atol=0.03, rtol=0)


def test_second_stage_masks_peak_where_the_coarse_predictions_land():
    """Predicted heatmaps whose argmax is 2 px left of and 1 px above each joint: the mixed Gaussian masks put the
    offset training there (the joint minus the mean displacement), not at the joint."""
    config = CALConfig(radius=3.0)
    joints = torch.arange(17)
    pixels = torch.stack([5 + joints % 6, 6 + joints // 6], dim=-1).float()  # joints on pixel centres
    keypoints = ((pixels + 0.5) / 16 * 2 - 1)[None, None]  # (1, 1, 17, 2)
    centres = heatmap_pixel_coordinates(keypoints, 16)
    coarse = pixels[None, None] - torch.tensor([2.0, 1.0])
    heatmaps = torch.zeros(1, 1, 17, 16, 16)
    for joint in range(17):
        heatmaps[0, 0, joint, int(coarse[0, 0, joint, 1]), int(coarse[0, 0, joint, 0])] = 1.0
    grid = torch.arange(16, dtype=torch.float32)
    masks = mixed_gaussian_masks(heatmaps, centres, torch.ones(1, 1, 17, dtype=torch.bool),
                                 centres[..., 0:1] - grid, centres[..., 1:2] - grid, config)
    peak = masks[0, 0].flatten(-2).argmax(dim=-1)
    torch.testing.assert_close(torch.stack([peak % 16, peak // 16], dim=-1).float(), coarse[0, 0], atol=0, rtol=0)


def test_second_stage_starts_at_its_share_of_training():
    model = build_model("cal", {"second_stage_from": 0.8})
    model.set_progress(0.7)
    assert not bool(model.second_stage)
    model.set_progress(0.8)
    assert bool(model.second_stage)
    assert "second_stage" in model.state_dict(), "a resumed run must know its stage"


def test_back_projection_is_zero_for_block_constant_images_and_counts_detail_that_averages_wrong():
    crops = torch.rand(2, 5, 3, 16, 16)
    blocks = crops.repeat_interleave(4, dim=-1).repeat_interleave(4, dim=-2)
    assert float(back_projection_error(blocks, crops, 4).max()) < 1e-6
    shifted = blocks + 0.1
    torch.testing.assert_close(back_projection_error(shifted, crops, 4), torch.full((2,), 0.1))
    # Detail inside a block that keeps the block's mean is free: super-resolution may add it.
    detail = blocks.clone()
    detail[..., 0::2, :] += 0.05
    detail[..., 1::2, :] -= 0.05
    assert float(back_projection_error(detail, crops, 4).max()) < 1e-6


def test_temporal_super_resolution_draws_on_other_frames_and_the_per_frame_one_does_not():
    torch.manual_seed(0)
    crops = torch.rand(2, 5, 3, 16, 16)
    changed = crops.clone()
    changed[:, 0] = torch.rand(2, 3, 16, 16)
    for temporal in (False, True):
        model = build_model("sr_pose", {"sr": {"temporal": temporal}}).eval()
        with torch.no_grad():
            before, after = model.super_resolution(crops), model.super_resolution(changed)
        assert not torch.equal(before[:, 0], after[:, 0])
        assert torch.equal(before[:, 4], after[:, 4]) != temporal, f"temporal={temporal}"


def test_linear_attention_equals_its_quadratic_form():
    """phi(Q) (phi(K)^T V) / (phi(Q) sum phi(K)) is attention with weights phi(q).phi(k) normalised per query."""
    from exlow_pose_training.models.super_resolution import LinearAttentionLayer

    torch.manual_seed(0)
    layer = LinearAttentionLayer(8, 2).eval()
    tokens = torch.randn(3, 10, 8)
    with torch.no_grad():
        q, k, v = layer.qkv(layer.norm1(tokens)).view(3, 10, 3, 2, 4).unbind(2)
        weights = torch.einsum("bnhd,bmhd->bhnm", layer.feature_map(q), layer.feature_map(k))
        attended = torch.einsum("bhnm,bmhd->bnhd", weights / weights.sum(-1, keepdim=True), v).reshape(3, 10, 8)
        expected = tokens + layer.out(attended)
        expected = expected + layer.feedforward(layer.norm2(expected))
        torch.testing.assert_close(layer(tokens), expected, atol=1e-5, rtol=1e-5)
