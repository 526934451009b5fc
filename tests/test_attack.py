"""The attack loop: early stop with compaction, determinism, verdicts after JPEG, targets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from camo_engine.attack import strength_config
from camo_engine.attack import IFGSM, AttackConfig
from camo_engine.attack.direction import step_direction
from camo_engine.backends import TorchBackend
from camo_engine.backends.base import Step
from camo_engine.benchmarks.harness import bench_images, fit
from camo_engine.io import jpeg
from camo_engine.victims import load_victim
from camo_engine.victims.objectives import Classifier
from camo_engine.threat import Panel, View
from camo_engine.threat.channels import Channel


@pytest.fixture(scope="module")
def lite0():
    return load_victim("efficientnet-lite0")


class CountingBackend:
    """Wraps a backend and records the batch size of every gradient pass."""

    name = "counting"

    def __init__(self, inner: TorchBackend) -> None:
        self.inner = inner
        self.step_sizes: list[int] = []
        self.forward_rows = 0

    def outputs(self, batch: torch.Tensor) -> torch.Tensor:
        self.forward_rows += batch.shape[0]
        return self.inner.outputs(batch)

    def step(self, batch: torch.Tensor, targets: torch.Tensor) -> Step:
        self.step_sizes.append(batch.shape[0])
        return self.inner.step(batch, targets)


def images_of(rgbs: list[np.ndarray]) -> list[torch.Tensor]:
    return [jpeg.to_float(rgb) for rgb in rgbs]


def test_real_predictions_are_pinned(lite0, photos):
    expected = {"coffee": "espresso", "rocket": "missile", "china": "palace", "flower": "daisy"}
    for name, label in expected.items():
        out = lite0(jpeg.to_float(photos[name])[None])
        assert lite0.describe(out) == [label], name


def test_early_stop_drops_finished_images(lite0, small_photos):
    """Every photo is in exactly as many gradient passes as it took steps: its verdict after
    each step is a forward-only pass, and a finished photo costs nothing more."""
    backend = CountingBackend(TorchBackend(lite0))
    config = strength_config("low", eps=8 / 255, alpha=1 / 255, steps=12, batch_size=len(small_photos))
    results = list(IFGSM(lite0, backend, config).run(images_of(small_photos)))
    assert len(results) == len(small_photos)
    steps = [r.steps for r in results]
    assert len(set(steps)) > 1, "photos should finish at different steps for this test to mean anything"
    assert sum(backend.step_sizes) == sum(steps)
    # The batch shrinks as photos finish: never more rows than photos still running.
    for t, size in enumerate(backend.step_sizes):
        assert size == sum(s > t for s in steps)


@pytest.mark.parametrize("name", ["efficientnet-lite0", "brisque"])
def test_forward_passes_are_the_baselines_and_one_verdict_per_step(name, small_photos):
    """Per photo and view: the original as it is (a classifier's top-1; a regressor's
    'already'), the un-attacked output through the view, then one forward-only verdict per
    step (on a one-view panel the final full check adds nothing)."""
    baseline = 2
    victim = load_victim(name)
    backend = CountingBackend(TorchBackend(victim))
    results = list(IFGSM(victim, backend, strength_config("low", steps=3)).run(images_of(small_photos[:3])))
    assert backend.forward_rows == sum(baseline + r.steps for r in results)


def test_batch_refills_from_queue(lite0, small_photos):
    backend = CountingBackend(TorchBackend(lite0))
    config = strength_config("low", steps=12, batch_size=3)
    results = list(IFGSM(lite0, backend, config).run(images_of(small_photos)))
    assert sorted(r.index for r in results) == list(range(len(small_photos)))
    assert max(backend.step_sizes) == 3
    assert sum(backend.step_sizes) == sum(r.steps for r in results)


def test_verdict_is_taken_after_jpeg(lite0, small_photos):
    config = strength_config("low", steps=12)
    for r in IFGSM(lite0, TorchBackend(lite0), config).run(images_of(small_photos[:4])):
        # The written JPEG 90 file, re-encoded by the platform at 90: the low panel's one view.
        seen = jpeg.to_float(jpeg.roundtrip(jpeg.roundtrip(r.rgb, 90), 90))
        out = lite0(seen[None])
        assert lite0.describe(out) == lite0.describe(r.after.outputs)
        assert torch.allclose(out, r.after.outputs, atol=1e-4)


def test_perturbation_stays_in_eps_ball(lite0, small_photos):
    config = strength_config("low", eps=3 / 255, alpha=1 / 255, steps=6)
    for r in IFGSM(lite0, TorchBackend(lite0), config).run(images_of(small_photos[:3])):
        diff = np.abs(r.rgb.astype(int) - small_photos[r.index].astype(int))
        assert diff.max() <= 3
        assert r.steps <= 6


def test_same_seed_gives_identical_bytes(lite0, small_photos):
    config = strength_config("low", steps=8, random_start=True, seed=7)

    def run(cfg: AttackConfig) -> list[bytes]:
        results = IFGSM(lite0, TorchBackend(lite0), cfg).run(images_of(small_photos[:3]))
        return [jpeg.encode(r.rgb, 90) for r in sorted(results, key=lambda r: r.index)]

    assert run(config) == run(config)
    other = strength_config("low", steps=8, random_start=True, seed=8)
    assert run(config) != run(other)


def test_targeted_mode_reaches_the_target(photos):
    victim = load_victim("efficientnet-lite0", target_class=963)  # pizza
    config = strength_config("low", eps=16 / 255, alpha=2 / 255, steps=20)
    [r] = IFGSM(victim, TorchBackend(victim), config).run([jpeg.to_float(photos["coffee"])])
    assert r.protected
    assert victim.describe(r.after.outputs) == ["pizza"]


def test_photo_already_protected_takes_no_gradient_pass(photos):
    """Targeted at what the victim already says: the baseline verdict after JPEG protects, so the
    photo leaves with 0 steps and the backend never runs a gradient pass."""
    victim = load_victim("efficientnet-lite0", target_class=967)  # espresso
    backend = CountingBackend(TorchBackend(victim))
    [r] = IFGSM(victim, backend, strength_config("low", steps=5)).run([jpeg.to_float(photos["coffee"])])
    assert r.protected and r.steps == 0 and backend.step_sizes == []
    assert np.array_equal(r.rgb, r.unattacked)


class LogitsOnly(Classifier):
    """A classifier objective with no network: enough to test the margin logic alone."""

    def geometry(self, height, width):
        return height, width

    def preprocess(self, image):
        return image

    def network(self, batch):
        return batch


def test_margin_covers_top_k_and_targeted():
    cats = [str(i) for i in range(5)]
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    top1 = LogitsOnly(cats, top_k=1)
    mask = top1.reference(logits, logits)
    assert mask.tolist() == [[1, 0, 0, 0, 0]]
    assert not top1.is_protected(logits, mask)
    assert top1.is_protected(torch.tensor([[3.9, 4.0, 3.0, 2.0, 1.0]]), mask)
    top3 = LogitsOnly(cats, top_k=3)
    # class 0 is 3rd: still inside the top-3, so not protected.
    assert not top3.is_protected(torch.tensor([[3.5, 4.0, 3.8, 2.0, 1.0]]), mask)
    assert top3.is_protected(torch.tensor([[1.5, 4.0, 3.8, 2.0, 1.0]]), mask)
    targeted = LogitsOnly(cats, target_class=4)
    tmask = targeted.reference(logits, logits)
    assert tmask.tolist() == [[1, 1, 1, 1, 0]]
    assert not targeted.is_protected(logits, tmask)
    assert targeted.is_protected(torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0]]), tmask)
    assert targeted.loss(torch.tensor([[0.0, 0.0, 0.0, 0.0, 9.0]]), tmask).item() == -2.0


def test_jpeg_alone_is_measured_against_the_clean_verdict(lite0, photos):
    """chelsea flips from 'tiger cat' to 'Egyptian cat' on JPEG 90 alone: no win for the attack."""
    config = strength_config("low", steps=10)
    [r] = IFGSM(lite0, TorchBackend(lite0), config).run([jpeg.to_float(photos["chelsea"])])
    clean = lite0(jpeg.to_float(photos["chelsea"])[None])
    assert lite0.describe(clean) != lite0.describe(r.before.outputs)
    assert r.states["alone"] and not r.states["already"] and not r.states["win"]
    # Protected, and success left both labels, the clean one and the re-encoded one.
    assert r.protected
    assert lite0.describe(r.after.outputs)[0] not in {
        lite0.describe(clean)[0],
        lite0.describe(r.before.outputs)[0],
    }


def test_step_schedule_falls_from_alpha_start_to_alpha():
    config = strength_config("low", alpha=1 / 255, alpha_start=4 / 255, steps=40)
    sizes = [config.step_size(t) for t in range(40)]
    assert sizes[0] == pytest.approx(4 / 255)
    assert all(a > b for a, b in zip(sizes[:10], sizes[1:11]))
    assert sizes[10:] == pytest.approx([1 / 255] * 30)
    assert strength_config("low", alpha=1 / 255).step_size(0) == 1 / 255


@pytest.mark.parametrize(
    "options",
    [{"alpha_start": 0.5 / 255}, {"alpha_start": 9 / 255}, {"momentum": -0.1}, {"blur_sigma": -1}],
)
def test_bad_schedule_or_momentum_is_refused(options):
    with pytest.raises(ValueError):
        strength_config("low", alpha=1 / 255, eps=8 / 255, **options)


def test_momentum_keeps_moving_where_the_clamped_loss_is_flat():
    """Past ``-confidence`` the classifier loss has zero gradient: plain I-FGSM stands still
    there, MI-FGSM keeps its last direction (the photo JPEG had undone can still move)."""
    grad = torch.randn(3, 8, 8)
    flat = torch.zeros(3, 8, 8)
    assert torch.equal(step_direction(flat.clone(), None, sigma=0.0, momentum=0.0), flat)
    velocity = step_direction(grad.clone(), None, sigma=0.0, momentum=1.0)
    assert torch.equal(velocity.sign(), grad.sign())
    assert torch.equal(step_direction(flat.clone(), velocity, sigma=0.0, momentum=1.0).sign(), grad.sign())


def test_blur_spreads_the_gradient_and_sigma_0_leaves_it():
    """TI-FGSM's blur: one hot pixel of gradient moves its 5x5 neighbourhood (sigma 1), in the
    same direction; sigma 0 moves that pixel alone."""
    impulse = torch.zeros(3, 9, 9)
    impulse[1, 4, 4] = 2.0

    def direction(sigma: float) -> torch.Tensor:
        return step_direction(impulse.clone(), None, sigma=sigma, momentum=0.0)

    assert torch.equal(direction(0.0), impulse)
    moved = direction(1.0).sign()
    assert moved[1, 2:7, 2:7].eq(1).all() and moved.sum() == 25
    impulse = torch.ones(3, 1, 1)  # a 1x1 photo: no border to reflect
    assert torch.equal(direction(1.0).sign(), impulse)


@pytest.mark.parametrize(
    "options",
    [{"momentum": 0.0}, {"alpha_start": 2 / 255}, {"random_start": True}, {"blur_sigma": 0.0}],
)
def test_levers_stay_in_eps_ball_and_judge_after_jpeg(lite0, small_photos, options):
    config = strength_config("low", eps=4 / 255, alpha=1 / 255, steps=6, **options)
    results = list(IFGSM(lite0, TorchBackend(lite0), config).run(images_of(small_photos[:3])))
    assert sorted(r.index for r in results) == [0, 1, 2]
    for r in results:
        diff = np.abs(r.rgb.astype(int) - small_photos[r.index].astype(int))
        assert diff.max() <= 4
        # The written JPEG 90 file, re-encoded by the platform at 90: the low panel's one view.
        seen = jpeg.to_float(jpeg.roundtrip(jpeg.roundtrip(r.rgb, 90), 90))
        assert lite0.describe(lite0(seen[None])) == lite0.describe(r.after.outputs)


def test_the_jpeg_aware_gradient_protects_the_photo_plain_ifgsm_once_stalled_on(lite0):
    """The bench's coffee-0 at 224 px: when the gradient ignored JPEG, plain I-FGSM passed the
    loss floor in two steps, JPEG undid it, and the zero gradient left it there.  The gradient
    now flows through the view's differentiable JPEG (the panel's views; ``low`` keeps the
    channel straight-through), so the loss sees what JPEG undoes: plain I-FGSM, momentum and
    the default all protect it (momentum's own rescue of a zero gradient is tested on the step
    direction)."""
    rgb = fit(dict(bench_images(3))["coffee-0"], (224, 224))

    def attack(config: AttackConfig):
        [r] = IFGSM(lite0, TorchBackend(lite0), config).run([jpeg.to_float(rgb)])
        return r

    plain = attack(strength_config("low", momentum=0.0, blur_sigma=0.0, steps=8, straight_through=False))
    assert plain.protected and plain.steps < 8
    moved = attack(strength_config("low", blur_sigma=0.0, steps=8, straight_through=False))
    assert moved.protected and moved.steps < 8
    assert attack(strength_config("low", steps=8, straight_through=False)).protected  # momentum and blur
    assert attack(strength_config("low", steps=8)).protected  # the low preset itself


def test_low_keeps_its_views_channel_out_of_the_gradient(lite0, small_photos, monkeypatch):
    """``low``'s one view is JPEG at the written quality: its gradient treats the channel as the
    identity (as the engine did before panels, and faster); the panels' presets go through the
    channel's differentiable stand-in."""
    calls = []
    stand_in = Channel.torch
    monkeypatch.setattr(Channel, "torch", lambda self, x: calls.append(self.name) or stand_in(self, x))
    photo = [jpeg.to_float(small_photos[0])]
    [r] = IFGSM(lite0, TorchBackend(lite0), strength_config("low", steps=2)).run(photo)
    assert r.steps > 0 and calls == []
    [r] = IFGSM(lite0, TorchBackend(lite0), strength_config("low", steps=2, straight_through=False)).run(photo)
    assert r.steps > 0 and calls and set(calls) == {"jpeg:90"}


def test_a_large_photos_views_go_one_channel_per_backward_pass(lite0, small_photos, monkeypatch):
    """Above SEPARATE_CHANNELS_ABOVE pixels the gradient is summed over one backward pass per
    channel (memory for 12 MP photos); it is the same gradient, so the same protected photo."""
    from camo_engine.attack import loop

    photos = [jpeg.to_float(p) for p in small_photos[:2]]
    # One panel view and two random channels a step: three channels, three passes per photo.
    config = strength_config("medium", panel="low", steps=3, check_every=3)
    together = list(IFGSM(lite0, TorchBackend(lite0), config).run(photos))
    backend = CountingBackend(TorchBackend(lite0))
    monkeypatch.setattr(loop, "SEPARATE_CHANNELS_ABOVE", 0)
    separate = list(IFGSM(lite0, backend, config).run(photos))
    per_step = config.views_per_step + config.jitter
    assert len(backend.step_sizes) > 2 * 3 and max(backend.step_sizes) < per_step  # several passes a step
    for a, b in zip(sorted(together, key=lambda r: r.index), sorted(separate, key=lambda r: r.index)):
        assert a.steps == b.steps == 3
        diff = np.abs(a.rgb.astype(int) - b.rgb.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # float summation order only


def test_the_written_files_jpeg_is_in_the_gradient_once_per_step(lite0, small_photos, monkeypatch):
    """Views start from the written file, so the gradient goes through its JPEG stand-in too
    (once per photo and step, shared by the photo's views); straight-through presets skip it."""
    calls = []
    stand_in = Channel.torch
    monkeypatch.setattr(Channel, "torch", lambda self, x: calls.append(self.name) or stand_in(self, x))
    panel = Panel("as written", (View.parse("none"), View.parse("none", "squash:224:bilinear")))
    photo = [jpeg.to_float(small_photos[0])]
    config = strength_config("medium", jitter=0, steps=3, check_every=3)
    [r] = IFGSM(lite0, TorchBackend(lite0), config, panel=panel).run(photo)
    assert r.steps == 3 and calls.count("jpeg:90") == 3
    calls.clear()
    [r] = IFGSM(lite0, TorchBackend(lite0), dataclasses.replace(config, straight_through=True), panel=panel).run(photo)
    assert r.steps == 3 and "jpeg:90" not in calls


def test_native_convolutions_give_the_onednn_gradient_and_restore_the_flag():
    """The stand-ins run on ATen's convolutions (faster backward); the values are the same."""
    from camo_engine.attack.loop import native_convolutions
    from camo_engine.threat.channels import jpeg_torch, resize_torch

    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0), requires_grad=True)
    grads = []
    for native in (False, True):
        with native_convolutions(native):
            assert torch.backends.mkldnn.enabled is not native
            y = resize_torch(jpeg_torch(x, 85), (48, 64))
            (y * torch.linspace(0, 1, y.numel()).view_as(y)).sum().backward()
        grads.append(x.grad.clone())
        x.grad = None
    assert torch.backends.mkldnn.enabled
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
