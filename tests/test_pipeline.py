"""The diffusers contract of Lab6Pipeline: save/load round trip, output types, scheduler swap, callbacks."""

import json
import re

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from PIL import Image

from lab6.diffusion import make_noise_scheduler
from lab6.labels import ConditionError
from lab6.loading import ModelLoadError, load_pipeline, save_pipeline
from lab6.model import ConditionalUNet
from lab6.pipeline import Lab6Pipeline, build_pipeline
from lab6.refiner import RefinedPipeline, karras_timesteps
from lab6.samplers import GreyMeanDDPMScheduler, make_sampler
from lab6.sampling import Sampling, generate
from tests.test_model import TINY

CONDITIONS = [["red cube"], ["gray sphere", "cyan cube"]]


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    unet = ConditionalUNet(conditioning="cross_attention", **TINY).eval()
    pipe = build_pipeline(unet, make_noise_scheduler(100, "cosine", "v").config, 3.0, "grey-mean")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images(pipe, **kwargs):
    return pipe(CONDITIONS, num_inference_steps=3, generator=torch.Generator().manual_seed(1), **kwargs).images


def test_save_and_from_pretrained_round_trip_in_the_diffusers_layout(pipe, tmp_path):
    save_pipeline(pipe, tmp_path / "model", {"train_step": 7})
    folder = tmp_path / "model"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "Lab6Pipeline" and index["unet"] == ["lab6.model", "ConditionalUNet"]
    assert index["guidance_scale"] == 3.0 and index["initial_noise"] == "grey-mean"
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "scheduler" / "scheduler_config.json").is_file()
    again = Lab6Pipeline.from_pretrained(folder)
    again.set_progress_bar_config(disable=True)
    assert isinstance(again.scheduler, DPMSolverMultistepScheduler)
    assert torch.equal(images(pipe, output_type="pt"), images(again, output_type="pt"))
    assert load_pipeline(folder).metadata == {"train_step": 7}


def test_output_types(pipe):
    as_pt, as_np, as_pil = images(pipe, output_type="pt"), images(pipe, output_type="np"), images(pipe)
    assert as_pt.shape == (2, 3, 64, 64) and 0 <= as_pt.min() and as_pt.max() <= 1
    assert as_np.shape == (2, 64, 64, 3) and np.allclose(as_np, as_pt.permute(0, 2, 3, 1).numpy())
    assert isinstance(as_pil[0], Image.Image) and as_pil[0].size == (64, 64)
    assert images(pipe, output_type="latent").shape == (2, 3, 16, 16)  # x_0 at the model's size, for a next stage
    with pytest.raises(ValueError, match="output_type must be"):
        images(pipe, output_type="jpg")


def test_conditions_as_multi_hot_tensors_draw_the_same_images(pipe):
    from lab6.labels import encode_many

    tensor = torch.from_numpy(encode_many(CONDITIONS))
    assert torch.equal(images(pipe, output_type="pt"),
                       pipe(tensor, num_inference_steps=3, generator=torch.Generator().manual_seed(1),
                            output_type="pt").images)


@pytest.mark.parametrize("bad, message", [
    ([], "no conditions to draw"),
    ([["red cone"]], "unknown label 'red cone'"),
    ("red cube", "must be a list of label lists"),
    (torch.zeros(2, 5), r"\(B, 24\) multi-hot"),
    (torch.full((1, 24), 0.5), "only 0 and 1"),
])
def test_bad_conditions_are_named(pipe, bad, message):
    with pytest.raises(ConditionError, match=message):
        pipe(bad, num_inference_steps=2)


@pytest.mark.parametrize("settings, message", [
    ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number >= 0, got nan"),
    ({"guidance_scale": -1.0}, "guidance_scale must be a finite number >= 0, got -1.0"),
    ({"num_inference_steps": 0}, "num_inference_steps must be >= 1, got 0"),
    ({"output_type": "jpg"}, "output_type must be one of pil, np, pt, latent, got 'jpg'"),
    ({"max_batch_size": 0}, "max_batch_size must be >= 1 (images per network call), got 0"),
])
def test_bad_settings_are_named_before_sampling(pipe, settings, message):
    """A NaN guidance scale once drew NaN images and wrote black PNGs, with only numpy's cast warning."""
    with pytest.raises(ValueError, match=re.escape(message)):
        pipe(CONDITIONS, **{"num_inference_steps": 2, **settings})


def test_max_batch_size_bounds_each_network_call_and_keeps_the_images(pipe):
    calls = []
    real_forward = pipe.unet.forward
    pipe.unet.forward = lambda x, *args, **kwargs: calls.append(len(x)) or real_forward(x, *args, **kwargs)
    try:
        chunked = pipe(CONDITIONS * 3, num_inference_steps=2, output_type="pt", max_batch_size=4,
                       generator=torch.Generator().manual_seed(3)).images
    finally:
        pipe.unet.forward = real_forward
    whole = pipe(CONDITIONS * 3, num_inference_steps=2, output_type="pt",
                 generator=torch.Generator().manual_seed(3)).images
    assert max(calls) <= 2 * 4 < 2 * len(CONDITIONS * 3)  # the guided pair: twice the images per call
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scheduler_class, steps, options", [
    (DDIMScheduler, 50, {"clip_sample": False}), (EulerDiscreteScheduler, 50, {}),
    (UniPCMultistepScheduler, 10, {}), (DEISMultistepScheduler, 20, {})])
def test_any_ode_scheduler_swaps_in_the_diffusers_way_and_draws_the_same_image(pipe, scheduler_class, steps, options):
    """Every deterministic sampler solves the same probability-flow ODE from the same starting noise, so at
    enough steps each lands on DPM-Solver++'s image. Euler's starts at x_T = sigma_max x noise
    (``init_noise_sigma``; without it: 0.9 off), UniPC and DEIS take no ``generator`` in their step."""
    reference = Lab6Pipeline(pipe.unet, pipe.scheduler, 3.0, "grey-mean")
    swapped = Lab6Pipeline(pipe.unet, scheduler_class.from_config(pipe.scheduler.config, **options), 3.0, "grey-mean")
    for p in (reference, swapped):
        p.set_progress_bar_config(disable=True)
    expected = reference(CONDITIONS, num_inference_steps=99, output_type="pt",
                         generator=torch.Generator().manual_seed(1)).images
    out = swapped(CONDITIONS, num_inference_steps=steps, output_type="pt",
                  generator=torch.Generator().manual_seed(1)).images
    assert (out - expected).abs().max() < 0.05


@pytest.mark.parametrize("scheduler_class", [DPMSolverMultistepScheduler, GreyMeanDDPMScheduler])
def test_a_scheduler_for_another_kind_of_model_output_is_refused_by_name(pipe, scheduler_class):
    """lab6's models predict epsilon or v; a scheduler configured for x_0 ("sample") would be read wrongly."""
    swapped = Lab6Pipeline(pipe.unet, scheduler_class.from_config(pipe.scheduler.config, prediction_type="sample"))
    with pytest.raises(ValueError, match="takes prediction_type epsilon or v_prediction, got 'sample'"):
        images(swapped)


def test_callback_sees_every_step_and_can_replace_the_latents(pipe):
    seen = []

    def callback(p, i, t, tensors):
        seen.append((i, int(t), tuple(tensors)))
        return {"latents": torch.zeros_like(tensors["latents"])} if i == 2 else {}

    out = images(pipe, output_type="pt", callback_on_step_end=callback,
                 callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"])
    assert [s[0] for s in seen] == [0, 1, 2] and seen[0][2] == ("latents", "pred_original_sample")
    assert torch.allclose(out, torch.full_like(out, 0.5))  # the last step's latents were replaced by zeros
    with pytest.raises(ValueError, match="callback tensors"):
        images(pipe, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["noise"])


def test_generate_names_the_sampler_and_records_frames(pipe):
    result = generate(pipe, CONDITIONS, Sampling("ddim", 4, seed=0), record_every=2, progress=False)
    # the model's guidance and noise filled in; no refiner, so not refined
    assert result.sampling == Sampling("ddim", 4, 3.0, "grey-mean", seed=0, refine=False)
    assert result.sampling.describe() == "DDIM-4, w = 3"  # grey-mean: the default, so not named
    plain = generate(pipe, CONDITIONS, Sampling(steps=2, noise="gaussian"), progress=False)
    assert plain.sampling.describe() == "DPM-Solver++-2, w = 3, gaussian noise"
    again = generate(pipe, CONDITIONS, Sampling("ddim", 4, seed=0), record_every=2, progress=False)
    assert torch.equal(again.images, result.images)  # the DDIM variant is built once and reused
    assert len(pipe._sampler_variants) == 2
    assert result.timesteps == sorted(result.timesteps, reverse=True) and len(result.timesteps) == 3
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)  # the pipeline itself is unchanged


def test_a_flat_folder_of_the_older_layout_still_loads(pipe, tmp_path):
    flat = tmp_path / "flat"
    pipe.unet.save_pretrained(flat)
    make_noise_scheduler(100, "cosine", "v").save_pretrained(flat)
    (flat / "lab6.json").write_text(json.dumps({"guidance": 4.0}))
    loaded = load_pipeline(flat)
    assert loaded.guidance_scale == 4.0 and isinstance(loaded.scheduler, DPMSolverMultistepScheduler)


def test_truncated_weights_are_named(pipe, tmp_path):
    save_pipeline(pipe, tmp_path / "model", {})
    weights = tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match="could not load the model in .*truncated"):
        load_pipeline(tmp_path / "model")


def test_the_shipped_model_loads_as_a_pipeline():
    from lab6.refiner import RefinedPipeline, RefinerUNet

    pipe = load_pipeline()
    assert isinstance(pipe, RefinedPipeline) and isinstance(pipe.refiner, RefinerUNet) and pipe.guidance_scale > 0
    assert isinstance(make_sampler("ddpm", pipe.scheduler.config).config.num_train_timesteps, int)


@pytest.fixture(scope="module")
def refined(pipe):
    """The tiny pipeline followed by a tiny 64-px refiner trained (as its record says) on t < 30 of 100."""
    from lab6.refiner import with_refiner

    torch.manual_seed(1)
    unet = ConditionalUNet(conditioning="cross_attention", **{**TINY, "sample_size": 64, "patch_size": 4}).eval()
    refiner = build_pipeline(unet, make_noise_scheduler(100, "cosine", "v").config)
    refiner.metadata = {"recipe": {"max_timestep": 30}}
    return with_refiner(pipe, refiner, 0.3)


def test_a_refiner_redraws_the_first_stage_and_refine_false_skips_it(pipe, refined):
    first_stage = images(pipe, output_type="pt")
    assert torch.equal(images(refined, output_type="pt", refine=False), first_stage)
    both = images(refined, output_type="pt")
    assert both.shape == first_stage.shape and not torch.equal(both, first_stage)
    assert torch.equal(both, images(refined, output_type="pt"))  # seeded, as the first stage
    steps = []
    refined(CONDITIONS, num_inference_steps=3, callback_on_step_end=lambda p, i, t, d: steps.append((i, int(t))))
    assert refined.refiner_steps(3) == 1
    assert [i for i, _ in steps] == [0, 1, 2, 3] and steps[3][1] < 30  # the refiner's step, in its trained range
    ddim = refined.with_sampler("ddim")
    assert ddim.refiner is refined.refiner and isinstance(ddim.scheduler, DDIMScheduler)
    # the refiner's Karras steps need a DDIM that takes any timesteps: first-order DPM-Solver++ (make_sampler)
    assert ddim.refiner_scheduler.config.solver_order == 1


def test_refiner_of_pairs_the_same_refiner_again_at_another_strength(pipe, refined):
    from lab6.refiner import refiner_of, with_refiner

    assert torch.equal(images(with_refiner(pipe, refiner_of(refined), 0.3), output_type="pt"),
                       images(refined, output_type="pt"))
    assert not torch.equal(images(with_refiner(pipe, refiner_of(refined), 0.1), output_type="pt"),
                           images(refined, output_type="pt"))
    with pytest.raises(ValueError,
                       match=r"refiner strength must be in \(0, 0.3\] \(the refiner was trained on t < 30\)"):
        with_refiner(pipe, refiner_of(refined), 0.5)  # its training record travels with it
    with pytest.raises(ValueError, match="this pipeline has no refiner"):
        refiner_of(pipe)


def test_a_refiners_steps_follow_its_step_ratio_apart_from_its_strength(pipe, refined, tmp_path):
    from lab6.refiner import refiner_of, with_refiner

    weaker = with_refiner(pipe, refiner_of(refined), 0.1)
    assert weaker.refiner_steps(20) == 2  # unset: strength x steps, as diffusers' img2img
    kept = with_refiner(pipe, refiner_of(refined), 0.1, step_ratio=0.2)
    assert kept.refiner_steps(20) == 4 and kept.refiner_steps(10) == 2 and kept.refiner_steps(2) == 1
    steps = []
    kept(CONDITIONS, num_inference_steps=10, callback_on_step_end=lambda p, i, t, d: steps.append(int(t)))
    assert steps[10:] == karras_timesteps(kept.refiner_scheduler.alphas_cumprod, 9, 2) and steps[-1] == 0
    save_pipeline(kept, tmp_path / "kept", {})
    again = load_pipeline(tmp_path / "kept")
    assert again.config.refiner_step_ratio == 0.2 and again.with_sampler("ddim").refiner_steps(20) == 4
    with pytest.raises(ValueError, match=r"refiner_step_ratio must be in \(0, 1\] .* got 1.5"):
        with_refiner(pipe, refiner_of(refined), 0.1, step_ratio=1.5)


def test_the_refiners_steps_end_at_t_0_where_its_scheduler_takes_custom_timesteps(pipe, refined):
    """Karras spacing from strength x T down to 0 with every sampler (DDIM as first-order DPM-Solver++, which
    takes any timesteps); ``refiner_spacing="uniform"`` takes the last steps of a uniform schedule."""
    from lab6.refiner import with_refiner

    def refiner_timesteps(pipeline):
        steps = []
        pipeline(CONDITIONS, num_inference_steps=10, callback_on_step_end=lambda p, i, t, d: steps.append(int(t)))
        return steps[10:]

    alphas_cumprod = refined.refiner_scheduler.alphas_cumprod
    assert refiner_timesteps(refined) == karras_timesteps(alphas_cumprod, 29, 3) == [29, 7, 0]
    assert refiner_timesteps(refined.with_sampler("ddpm")) == [29, 7, 0]
    assert refiner_timesteps(refined.with_sampler("ddim")) == [29, 7, 0]
    uniform = with_refiner(pipe, build_pipeline(refined.refiner, refined.refiner_scheduler.config), 0.3,
                           spacing="uniform")
    assert refiner_timesteps(uniform) == [29, 19, 9]
    with pytest.raises(ValueError, match="refiner_spacing must be one of karras, uniform, got 'even'"):
        with_refiner(pipe, build_pipeline(refined.refiner, refined.refiner_scheduler.config), 0.3, spacing="even")


def test_a_refined_pipeline_round_trips(refined, tmp_path):
    save_pipeline(refined, tmp_path / "model", {"train_step": 7})
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["_class_name"] == "RefinedPipeline" and index["refiner_strength"] == 0.3
    assert index["refiner"] == ["lab6.model", "ConditionalUNet"] and index["refiner_spacing"] == "karras"
    again = RefinedPipeline.from_pretrained(tmp_path / "model")
    again.set_progress_bar_config(disable=True)
    assert torch.equal(images(refined, output_type="pt"), images(again, output_type="pt"))
    # load_pipeline puts both networks' weights channels-last (faster convolutions): the same images to rounding
    loaded = load_pipeline(tmp_path / "model")
    for network in (loaded.unet, loaded.refiner):
        weight = network.unet.conv_in.weight
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    torch.testing.assert_close(images(loaded, output_type="pt"), images(again, output_type="pt"), atol=1e-4, rtol=0)
    del index["refiner_spacing"]  # a folder saved before the key existed draws as it was tuned: uniform steps
    (tmp_path / "model" / "model_index.json").write_text(json.dumps(index))
    assert load_pipeline(tmp_path / "model").config.refiner_spacing == "uniform"


def test_a_refiner_is_refused_beyond_the_noise_levels_it_was_trained_on(pipe, refined):
    from lab6.refiner import with_refiner

    refiner = build_pipeline(refined.refiner, refined.refiner_scheduler.config)
    refiner.metadata = {"recipe": {"max_timestep": 30}}
    with pytest.raises(ValueError,
                       match=r"refiner strength must be in \(0, 0.3\] \(the refiner was trained on t < 30\), got 0.5"):
        with_refiner(pipe, refiner, 0.5)
    with pytest.raises(ValueError, match="a refiner draws 64x64 images; this one draws 16x16"):
        with_refiner(pipe, pipe, 0.1)


def test_refine_alone_redraws_given_images_as_the_two_stage_call_does(pipe, refined):
    """``refine`` on the first stage's images draws the two-stage call's images (its generator goes on from where
    the first stage left it, so the refiner's noise is the same); it is how real images sent through 32 px
    measure a refiner apart from any first stage."""
    both = refined(CONDITIONS, num_inference_steps=3, generator=torch.Generator().manual_seed(5),
                   output_type="pt").images
    generator = torch.Generator().manual_seed(5)
    first = refined(CONDITIONS, num_inference_steps=3, generator=generator, output_type="pt", refine=False).images
    redrawn = refined.refine(first, CONDITIONS, num_inference_steps=3, generator=generator)
    assert redrawn.shape == (2, 3, 64, 64)
    torch.testing.assert_close(redrawn, both, atol=1e-5, rtol=0)
    with pytest.raises(ValueError,
                       match=re.escape("images must be (2, 3, H, W), one per condition, got (1, 3, 64, 64)")):
        refined.refine(first[:1], CONDITIONS)
    assert not hasattr(pipe, "refine")  # a one-stage pipeline has no refiner step at all


def test_a_refined_result_keeps_the_first_stage_images_that_refine_false_draws(refined):
    both = generate(refined, CONDITIONS, Sampling(steps=3, seed=2), progress=False)
    first = generate(refined, CONDITIONS, Sampling(steps=3, seed=2, refine=False), progress=False)
    assert both.sampling.refine and not first.sampling.refine and first.first_stage is None
    torch.testing.assert_close(both.first_stage, first.images, atol=1e-6, rtol=0)
    assert not torch.allclose(both.images, first.images)


def test_a_folder_saved_with_the_refiner_inside_lab6pipeline_loads_as_a_refined_pipeline(tmp_path):
    """Folders written before the refiner had a pipeline of its own name ``Lab6Pipeline`` (with a refiner and a
    ``guidance_interval`` key) and a ``lab6.model.ConditionalUNet`` with a full-resolution head: they load as the
    ``RefinedPipeline`` they are and draw the same images as the shipped folder."""
    import shutil

    from lab6.refiner import RefinerUNet
    from lab6.run_files import SHIPPED_MODEL

    old = shutil.copytree(SHIPPED_MODEL, tmp_path / "old")
    index = json.loads((old / "model_index.json").read_text())
    index.update(_class_name="Lab6Pipeline", guidance_interval=None, refiner=["lab6.model", "ConditionalUNet"])
    (old / "model_index.json").write_text(json.dumps(index))
    config = json.loads((old / "refiner" / "config.json").read_text())
    (old / "refiner" / "config.json").write_text(json.dumps({**config, "_class_name": "ConditionalUNet"}))
    loaded, shipped = load_pipeline(old), load_pipeline()
    assert isinstance(loaded, RefinedPipeline) and isinstance(loaded.refiner, RefinerUNet)
    assert torch.equal(images(loaded, output_type="pt"), images(shipped, output_type="pt"))
    (old / "model_index.json").write_text(json.dumps({**index, "guidance_interval": [0.3, 5.0]}))
    with pytest.raises(ModelLoadError, match="guides only in the interval"):
        load_pipeline(old)
