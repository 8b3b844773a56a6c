"""The label picker's rules and generation, without a browser (the widgets work without a kernel)."""


import pytest
import torch

from lab6.labels import CLEVR_RGB, LABELS, MAX_OBJECTS_TRAINED, ConditionError, validate_condition
from lab6.loading import load_pipeline as load_model
from lab6.sampling import Sampling, run_denoising
from lab6.widgets import PICKER_STEPS, LabelPicker, denoising_slider

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHOICE = ["red sphere", "cyan cylinder", "cyan cube"]




@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_model(tiny_run)


def test_grid_is_3_by_8_swatches_with_stable_classes(loaded):
    picker = LabelPicker(loaded, evaluator=False)
    assert list(picker.buttons) == list(LABELS) and MAX_OBJECTS_TRAINED == 3
    red_cube = picker.buttons["red cube"]
    assert {"lab6-label", "lab6-label-red-cube"} <= set(red_cube._dom_classes)
    assert "#{:02x}{:02x}{:02x}".format(*CLEVR_RGB["red"]) == "#ad2323"
    assert ".lab6-label-red-cube { background-color: #ad2323" in picker.style_box.value
    assert ".lab6-label-yellow-cylinder { background-color: #ffee33" in picker.style_box.value
    assert picker.buttons["yellow cylinder"].style.text_color == "black" and red_cube.style.text_color == "white"
    for widget, css in ((picker.generate_button, "lab6-generate"), (picker.surprise_button, "lab6-surprise"),
                        (picker.image, "lab6-image"), (picker.message_box, "lab6-message")):
        assert css in widget._dom_classes
    assert picker.guidance_input.value == loaded.guidance_scale  # the model's own guidance by default


def test_a_fourth_label_is_refused_with_a_message(loaded):
    picker = LabelPicker(loaded, evaluator=False)
    assert all(picker.select(label) for label in CHOICE)
    assert picker.select("gray cube") is False
    assert picker.selected == CHOICE and picker.buttons["gray cube"].value is False
    assert "At most 3 objects" in picker.message and "gray cube" in picker.message
    assert "lab6-refused" in picker.message_box._dom_classes and "At most 3" in picker.message_box.value

    picker.buttons["blue sphere"].value = True  # a click in the browser: refused and un-toggled
    assert picker.buttons["blue sphere"].value is False and picker.selected == CHOICE

    picker.buttons["cyan cube"].value = False  # un-click one; now a third fits again
    assert picker.selected == CHOICE[:2] and picker.message == ""
    picker.buttons["blue sphere"].value = True
    assert picker.selected == CHOICE[:2] + ["blue sphere"] and picker.buttons["blue sphere"].value is True
    assert picker.toggle("blue sphere") is False and picker.selected == CHOICE[:2]
    with pytest.raises(ConditionError, match="Did you mean"):
        picker.select("red cubes")


def test_surprise_me_draws_valid_conditions(loaded):
    picker = LabelPicker(loaded, evaluator=False, rng_seed=0)
    sizes = set()
    for _ in range(40):
        condition = picker.surprise()
        validate_condition(condition)
        assert 1 <= len(condition) <= 3 and len(set(condition)) == len(condition)
        assert picker.selected == condition
        assert {label for label, b in picker.buttons.items() if b.value} == set(condition)
        sizes.add(len(condition))
    assert sizes == {1, 2, 3}


def test_generate_gives_a_64px_image_and_probabilities_of_the_chosen_labels(loaded, evaluator_file):
    picker = LabelPicker(loaded, evaluator=evaluator_file, sampling=Sampling(steps=3, seed=5))
    picker.set_condition(CHOICE)
    result = picker.generate()
    assert tuple(result.image.shape) == (3, 64, 64) and result.pixels.shape == (64, 64, 3)
    assert set(result.probabilities) == set(CHOICE) and all(0 <= p <= 1 for p in result.probabilities.values())
    assert len(result.top) == 3 and 0 <= result.hits <= 3
    assert result.strip.shape[0] == 2 * 64 + 2 and result.strip.shape[2] == 3
    assert picker.progress.value == picker.progress.max == 3
    assert bytes(picker.image.value).startswith(PNG_MAGIC) and "lab6-generated" in picker.image._dom_classes
    assert all(label in picker.probabilities_box.value for label in CHOICE)
    again = picker.generate()  # same seed, same image
    assert torch.equal(again.image, result.image)


def test_generate_without_an_evaluator_says_why(loaded, tmp_path):
    picker = LabelPicker(loaded, evaluator=tmp_path / "missing.pth", sampling=Sampling(steps=2))
    picker.select("red cube")
    result = picker.generate()
    assert result.probabilities is None and "not found" in result.evaluator_message
    assert "not found" in picker.probabilities_box.value


def test_generate_needs_a_choice_and_a_model_path_works(tiny_run):
    picker = LabelPicker(str(tiny_run), evaluator=False, sampling=Sampling("ddim", steps=2))
    with pytest.raises(ConditionError, match="choose 1-3 objects"):
        picker.generate()
    picker.surprise()
    assert picker.generate().pixels.shape == (64, 64, 3)
    assert picker.pipe.path == tiny_run / "model"


def test_the_picker_opens_at_its_own_steps_and_resets_them_with_the_sampler(loaded):
    """DPM-Solver++ opens at 10 steps in the picker (one image within 0.5 s), not lab6's 20; each sampler
    chosen later brings its own default, and a number given to the picker wins."""
    from lab6.samplers import DEFAULT_STEPS

    picker = LabelPicker(loaded, evaluator=False)
    assert picker.steps_input.value == PICKER_STEPS["dpmsolver"] == 10 < DEFAULT_STEPS["dpmsolver"]
    picker.sampler_input.value = "ddim"
    assert picker.steps_input.value == PICKER_STEPS["ddim"] == DEFAULT_STEPS["ddim"]
    picker.sampler_input.value = "dpmsolver"
    assert picker.steps_input.value == 10
    assert LabelPicker(loaded, evaluator=False, sampling=Sampling(steps=20)).steps_input.value == 20


def test_denoising_slider_walks_the_recorded_steps(loaded):
    result = run_denoising(loaded, sampling=Sampling(steps=3), frames=3, progress=False)
    box = denoising_slider(result)
    slider, caption, images = box.children
    assert slider.max == len(result.timesteps) == 3 and "t = " in caption.value
    first = images.children[0].value
    slider.value = slider.max
    assert "final" in caption.value and images.children[0].value != first


def test_a_refined_model_draws_both_stages_and_the_checkbox_skips_the_refiner(tiny_refined_model):
    picker = LabelPicker(str(tiny_refined_model), evaluator=False, sampling=Sampling(steps=5, seed=3))
    picker.set_condition(CHOICE)
    refined = picker.generate()
    assert refined.sampling.refine and picker.progress.value == picker.progress.max == 6  # 5 + 1 refiner step
    # its label is shown whole: no indent, and a description box as wide as the text (the default cuts it)
    assert picker.refine_input.indent is False and picker.refine_input.style.description_width == "initial"
    picker.refine_input.value = False
    first_stage = picker.generate()
    assert not first_stage.sampling.refine and picker.progress.max == 5
    assert not torch.equal(first_stage.image, refined.image)
    box = denoising_slider(run_denoising(picker.pipe, sampling=Sampling(steps=5), frames=5, progress=False))
    slider, caption, _ = box.children
    slider.value = slider.max - 1  # the last recorded step: the refiner's
    assert "refiner t = " in caption.value


def test_the_picker_opens_on_the_shipped_models_few_step_first_stage():
    """With no model, the picker draws the shipped model's distilled first stage: its own DDIM steps at w = 1, with
    the shipped refiner, one network call per step."""
    from lab6.loading import few_step_model
    from lab6.run_files import SHIPPED_MODEL

    few_step = few_step_model(None)
    assert few_step == SHIPPED_MODEL / "few-step"
    picker = LabelPicker(evaluator=False)
    steps = load_model(few_step).metadata["distilled"]["steps"]
    assert (picker.sampler_input.value, picker.steps_input.value, picker.guidance_input.value) == ("ddim", steps, 1.0)
    picker.set_condition(CHOICE)
    result = picker.generate()
    assert result.sampling.name == f"DDIM-{steps}" and picker.progress.value == steps + 1  # + the refiner's step
    assert picker.pipe.path == few_step and picker.pipe.refiner is not None
