import pytest
import torch
from diffusers import DDPMScheduler

from lab6.diffusion import initial_noise, make_noise_scheduler, predicted_x0, training_loss
from lab6.labels import encode_many
from lab6.model import ConditionalUNet
from lab6.pipeline import Lab6Pipeline
from lab6.refiner import karras_timesteps
from lab6.samplers import SAMPLERS, GreyMeanDDPMScheduler, make_sampler
from lab6.sampling import Sampling, generate
from tests.test_model import TINY


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ConditionalUNet(**TINY).eval()


CONDITIONS = torch.from_numpy(encode_many([["red cube"], ["gray sphere", "cyan cube"]]))


def sample(model, condition, config, *, sampler, steps, seed, guidance=2.0, noise="gaussian", record_every=0):
    """Draw with lab6's pipeline around ``model`` (images in [-1, 1] at 64x64)."""
    return generate(Lab6Pipeline(model, make_sampler(sampler, config)), condition,
                    Sampling(sampler, steps, guidance, noise, seed), record_every=record_every, progress=False)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_runs_and_is_seed_deterministic(model, sampler):
    config = make_noise_scheduler(100).config
    a = sample(model, CONDITIONS, config, sampler=sampler, steps=5, seed=3).images
    b = sample(model, CONDITIONS, config, sampler=sampler, steps=5, seed=3).images
    c = sample(model, CONDITIONS, config, sampler=sampler, steps=5, seed=4).images
    assert a.shape == (2, 3, 64, 64) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_guidance_one_is_the_conditional_model(model):
    config = make_noise_scheduler(100).config
    guided = sample(model, CONDITIONS, config, sampler="ddim", steps=4, guidance=1.0, seed=0).images
    calls = []

    class Conditional(ConditionalUNet):  # counts calls: w = 1 must not evaluate the null condition
        def forward(self, x, t, c):
            calls.append(len(x))
            return super().forward(x, t, c)

    counting = Conditional(**TINY).eval()
    counting.load_state_dict(model.state_dict())
    plain = sample(counting, CONDITIONS, config, sampler="ddim", steps=4, guidance=1.0, seed=0).images
    assert torch.allclose(guided, plain) and calls == [2] * 4


def test_guidance_zero_ignores_the_condition(model):
    config = make_noise_scheduler(100).config
    a = sample(model, CONDITIONS, config, sampler="ddim", steps=4, guidance=0.0, seed=0).images
    other = torch.from_numpy(encode_many([["yellow cylinder"], ["blue cube", "brown sphere", "red cylinder"]]))
    b = sample(model, other, config, sampler="ddim", steps=4, guidance=0.0, seed=0).images
    assert torch.allclose(a, b, atol=1e-5)
    c = sample(model, other, config, sampler="ddim", steps=4, guidance=3.0, seed=0).images
    assert not torch.allclose(a, c, atol=1e-3)


def test_intermediates_for_the_denoising_figure(model):
    config = make_noise_scheduler(100).config
    result = sample(model, CONDITIONS[:1], config, sampler="ddpm", steps=20, seed=0, record_every=5)
    assert result.timesteps == sorted(result.timesteps, reverse=True) and len(result.timesteps) == 5
    assert len(result.intermediates) == len(result.predicted_x0) == 5
    assert result.intermediates[0].shape == (1, 3, 16, 16)


def test_grey_mean_noise_has_equal_channel_means_and_keeps_the_rest():
    plain = initial_noise((4, 3, 8, 8), torch.Generator().manual_seed(0))
    grey = initial_noise((4, 3, 8, 8), torch.Generator().manual_seed(0), "grey-mean")
    means = grey.mean(dim=(2, 3))
    assert torch.allclose(means, means.mean(dim=1, keepdim=True).expand_as(means), atol=1e-6)
    assert torch.allclose(grey - means[..., None, None], plain - plain.mean(dim=(2, 3), keepdim=True), atol=1e-6)
    assert torch.allclose(means.mean(dim=1), plain.mean(dim=(1, 2, 3)), atol=1e-6)  # brightness still varies
    with pytest.raises(ValueError, match="initial noise must be one of gaussian, grey-mean"):
        initial_noise((1, 3, 8, 8), torch.Generator(), "pink")


def test_snr_shift_multiplies_every_timesteps_snr():
    base = make_noise_scheduler(1000, "cosine", "v")
    shifted = make_noise_scheduler(1000, "cosine", "v", snr_shift=0.25)
    snr = lambda s: s.alphas_cumprod.double() / (1 - s.alphas_cumprod.double())  # noqa: E731
    assert torch.allclose(snr(shifted), 0.25 * snr(base), rtol=2e-3)  # alphas_cumprod is float32


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_predicted_x0_inverts_the_forward_process(prediction):
    scheduler = make_noise_scheduler(1000, "cosine", prediction)
    x0, noise, t = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 3, 8, 8), torch.tensor([10, 700])
    xt = scheduler.add_noise(x0, noise, t)
    target = noise if prediction == "epsilon" else scheduler.get_velocity(x0, noise, t)
    a = scheduler.alphas_cumprod[t][:, None, None, None]
    assert torch.allclose(predicted_x0(xt, target, a, prediction), x0, atol=1e-4)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("gamma", [None, 5.0])
def test_training_loss_is_finite_and_seeded(model, prediction, gamma):
    scheduler = make_noise_scheduler(100, "linear", prediction)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    labels = torch.from_numpy(encode_many([["red cube"]] * 4))
    losses = [training_loss(model, images, labels, scheduler, generator=torch.Generator().manual_seed(1),
                            min_snr_gamma=gamma) for _ in range(2)]
    assert torch.isfinite(losses[0]) and losses[0].item() == losses[1].item()


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        make_sampler("euler", make_noise_scheduler().config)
    with pytest.raises(ValueError, match="noise must be one of gaussian, grey-mean, got 'pink'"):
        make_sampler("ddpm", make_noise_scheduler().config, noise="pink")
    learned = DDPMScheduler.from_config(make_noise_scheduler(100).config, variance_type="learned_range")
    with pytest.raises(ValueError, match="fixed_small variance .* variance_type='learned_range'"):
        GreyMeanDDPMScheduler.from_config(learned.config).step(torch.zeros(1, 3, 4, 4), 50, torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        make_noise_scheduler(beta_schedule="quadratic")


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_grey_mean_ddpm_is_diffusers_ddpm_with_the_channel_means_of_its_step_noise_made_equal(prediction):
    """Same generator state, same step: the two differ by exactly std_t x (each channel's noise mean - their
    average), a constant per image and channel, so the step noise of GreyMeanDDPMScheduler carries no colour;
    the x_0 estimate (clipped, as the config says) is diffusers' own, and the last step (t = 0, no noise) is the
    same."""
    config = make_noise_scheduler(1000, "cosine", prediction).config
    grey, gaussian = make_sampler("ddpm", config, noise="grey-mean"), make_sampler("ddpm", config, noise="gaussian")
    assert type(grey) is GreyMeanDDPMScheduler and type(gaussian) is DDPMScheduler
    for scheduler in (grey, gaussian):
        scheduler.set_timesteps(50)
    x, output = torch.randn(4, 3, 8, 8), 3 * torch.randn(4, 3, 8, 8)  # x_0 estimates well outside [-1, 1]
    for t in grey.timesteps[[0, 25, 48, 49]]:
        ours = grey.step(output, t, x, generator=torch.Generator().manual_seed(1))
        theirs = gaussian.step(output, t, x, generator=torch.Generator().manual_seed(1))
        assert torch.equal(ours.pred_original_sample, theirs.pred_original_sample)
        assert ours.pred_original_sample.abs().max() == 1
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))  # the draw both steps took
        means = z.mean(dim=(2, 3), keepdim=True)
        prev_t = int(grey.previous_timestep(t))
        a_t, a_prev = grey.alphas_cumprod[t], grey.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        std = ((1 - a_t / a_prev) * (1 - a_prev) / (1 - a_t)).sqrt() if t > 0 else 0.0
        torch.testing.assert_close(theirs.prev_sample - ours.prev_sample,
                                   std * (means - means.mean(dim=1, keepdim=True)).expand_as(x), atol=1e-6, rtol=0)
    assert t == 0 and torch.equal(ours.prev_sample, theirs.prev_sample)


def test_ddpm_follows_the_pipelines_noise_and_a_saved_grey_mean_ddpm_loads_back(model, tmp_path):
    from lab6.loading import load_pipeline, save_pipeline

    config = make_noise_scheduler(100).config
    for noise, kind in (("grey-mean", GreyMeanDDPMScheduler), ("gaussian", DDPMScheduler)):
        pipe = Lab6Pipeline(model, make_sampler("dpmsolver", config), initial_noise=noise)
        assert type(pipe.with_sampler("ddpm").scheduler) is kind
        assert type(pipe.with_sampler("ddpm", noise="grey-mean").scheduler) is GreyMeanDDPMScheduler
    plain = Lab6Pipeline(model, DDPMScheduler.from_config(config), initial_noise="gaussian")(
        CONDITIONS, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt").images
    drawn = {noise: sample(model, CONDITIONS, config, sampler="ddpm", steps=3, seed=0, noise=noise).images
             for noise in ("gaussian", "grey-mean")}  # lab6's generate: --noise is the starting and the step noise
    assert torch.equal(drawn["gaussian"], plain * 2 - 1) and not torch.allclose(drawn["grey-mean"], drawn["gaussian"])
    save_pipeline(Lab6Pipeline(model, make_sampler("ddpm", config)), tmp_path / "ddpm", {})
    assert type(load_pipeline(tmp_path / "ddpm").scheduler) is GreyMeanDDPMScheduler


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_are_the_same_from_memory_and_from_disk(tmp_path, sampler):
    """A saved-and-reloaded schedule must build the very sampler the training run evaluates with."""
    scheduler = make_noise_scheduler(1000, "cosine", "v")
    scheduler.save_pretrained(tmp_path)
    from_memory = make_sampler(sampler, scheduler.config)
    from_disk = make_sampler(sampler, DDPMScheduler.load_config(tmp_path))
    for s in (from_memory, from_disk):
        s.set_timesteps(20)
    assert torch.equal(from_memory.timesteps, from_disk.timesteps)
    private = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert private(from_memory.config) == private(from_disk.config)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_ddim_for_any_timesteps_is_the_ddim_update_and_steps_between_the_timesteps_it_is_given(prediction):
    """On DDIM's own grid the any-timesteps DDIM (first-order DPM-Solver++) takes DDIMScheduler's steps, x0
    unclipped in both although the training config says clip_sample (make_sampler's docstring: clipping x0 but
    not its epsilon breaks strong guidance); on a Karras grid it lands on each given timestep."""
    config = make_noise_scheduler(1000, "cosine", prediction).config
    assert config.clip_sample  # what training records; the stand-in's x0 estimates below leave [-1, 1]
    ddim, any_steps = make_sampler("ddim", config), make_sampler("ddim", config, any_timesteps=True)
    ddim.set_timesteps(50)
    tail = ddim.timesteps[-10:]  # a refiner's noise levels (t < 200), where t = 999's tiny alpha is not in play
    any_steps.set_timesteps(timesteps=tail.tolist())
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=generator)
    direction = torch.randn(4, 3, 8, 8, generator=generator)
    y = x.clone()
    for t in tail:  # a stand-in model whose output depends on the sample and the timestep
        x = ddim.step(0.8 * x + 0.5 * direction * t / 1000, t, x).prev_sample
        y = any_steps.step(0.8 * y + 0.5 * direction * t / 1000, t, y).prev_sample
        assert torch.allclose(x, y, atol=1e-4)
    karras = karras_timesteps(any_steps.alphas_cumprod, 199, 5)
    any_steps.set_timesteps(timesteps=karras)
    assert any_steps.timesteps.tolist() == karras and karras[-1] == 0


def test_offset_noise_leaves_the_random_stream_of_runs_without_it(model):
    scheduler = make_noise_scheduler(100, "cosine", "v")
    images = torch.rand(4, 3, 16, 16) * 2 - 1

    def loss(**kwargs):
        return training_loss(model, images, CONDITIONS.repeat(2, 1), scheduler,
                             generator=torch.Generator().manual_seed(0), **kwargs)

    with torch.no_grad():
        assert torch.equal(loss(), loss(offset_noise=0.0))
        assert not torch.equal(loss(), loss(offset_noise=0.1))


def test_a_refiner_trains_only_on_timesteps_below_max_timestep(model):
    """``max_timestep`` is what makes a refiner: every timestep the model sees is below it."""
    scheduler = make_noise_scheduler(100, "cosine", "v")
    seen = []

    def recording_model(x, t, condition):
        seen.append(t.clone())
        return model(x, t, condition)

    images = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        for seed in range(20):
            training_loss(recording_model, images, CONDITIONS.repeat(2, 1), scheduler,
                          generator=torch.Generator().manual_seed(seed), max_timestep=10)
    seen = torch.cat(seen)
    assert seen.max() < 10 and len(seen.unique()) > 5  # below the limit, and still spread over it


def test_a_max_timestep_beyond_the_schedule_is_refused(tmp_path):
    from lab6.config import TrainConfig
    from lab6.train import Trainer

    with pytest.raises(ValueError, match=r"max_timestep must be 0 \(every t\) or 1..1000, got 1200"):
        Trainer(TrainConfig(steps=1, max_timestep=1200), tmp_path, tmp_path / "run")
