"""Notebook widgets: the interactive label picker (and ``denoising_slider``, from ``lab6.slider``).

``LabelPicker(model)`` shows a 3x8 grid of toggle buttons (rows: shapes, columns: colours, each in its
CLEVR colour), at most three chosen at once; guidance, sampler, steps and seed controls; a Generate
button (progress bar, then the 64x64 image enlarged, its denoising strip and the evaluator's probability
for each chosen label) and a "surprise me" button. The rules and the generation are plain methods
(:meth:`LabelPicker.select`, :meth:`LabelPicker.surprise`, :meth:`LabelPicker.generate`), so they are
tested without a browser; each widget carries a stable CSS class for browser tests (``lab6-generate``,
``lab6-label-<colour>-<shape>``, ...). The image it draws and the boxes' HTML are ``lab6.picker_view``'s.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from . import picker_view
from .diffusion import DEFAULT_GUIDANCE
from .images import png_bytes
from .labels import COLOURS, MAX_OBJECTS_TRAINED, SHAPES, ConditionError, label_index, random_condition
from .picker_view import PickerResult
from .samplers import DEFAULT_STEPS, SAMPLER_NAMES, SAMPLERS
from .sampling import Sampling, model_record, own_sampler
from .slider import denoising_slider  # noqa: F401  (notebook 03 imports it from here)

#: Steps per sampler when the picker opens or its sampler changes: DPM-Solver++ at 10 steps instead of lab6's 20,
#: half the wait for an image that is only slightly softer (docs/samplers.md#picker-steps; its time on 2 cores:
#: docs/throughput.md#one-image). The report keeps 20.
PICKER_STEPS = {**DEFAULT_STEPS, "dpmsolver": 10}


def _classed(widget, *css_classes: str):
    """``widget`` with CSS classes: the stable names the swatch rules and the browser test find it by."""
    for css_class in css_classes:
        widget.add_class(css_class)
    return widget


class LabelPicker:
    """Pick 1-3 objects, generate a scene, see what the evaluator sees.

    ``model``: a model or run folder, a ``Lab6Pipeline``, or None for the shipped model (loaded at the first
    Generate). ``evaluator``: an ``evaluator.Evaluator``, a checkpoint path, None for the default (the data
    root's ``checkpoint.pth``, else the shipped proxy), or False for none. ``sampling``: the controls' first
    values (None fields: the model's guidance scale, its own sampler and :meth:`steps_for` its steps). With no
    model, the shipped model's few-step distilled first stage (``loading.few_step_model``) when it has one.
    """

    MAX_CHOSEN = MAX_OBJECTS_TRAINED

    def __init__(self, model=None, *, evaluator=None, data_root: str | Path | None = None,
                 sampling: Sampling | None = None, device: str = "cpu", strip_frames: int = 8,
                 rng_seed: int | None = None):
        import ipywidgets as w

        from .loading import few_step_model
        from .pipeline import Lab6Pipeline

        if model is None:  # the shipped model in a few steps where it has them: an image before the button is let go
            model = few_step_model(None)
        self._model_arg = model
        if isinstance(model, Lab6Pipeline):
            self.pipe = model
        self.own_sampler = own_sampler(model)
        self._evaluator_arg, self.evaluator_error = evaluator, None
        self.data_root = data_root
        self.device = device
        self.strip_frames = strip_frames
        self.rng = np.random.default_rng(rng_seed)
        self.selected: list[str] = []
        self.message = ""
        self.last: PickerResult | None = None
        self._syncing = False
        self.sampling = sampling or Sampling()
        if self.sampling.guidance_scale is None:  # the model's, read from its record before its weights load
            guidance = model_record(model).get("guidance", DEFAULT_GUIDANCE)
            self.sampling = self.sampling.replace(guidance_scale=float(guidance))

        self._build_label_grid(w)
        self._build_controls(w, self.sampling)
        self.widget = _classed(w.VBox([
            self.style_box, w.HTML(picker_view.TITLE), self.grid, self.chosen_box, self.message_box,
            w.HBox([self.guidance_input, self.sampler_input]), w.HBox([self.steps_input, self.seed_input]),
            self.refine_input,
            w.HBox([self.generate_button, self.surprise_button, self.clear_button, self.progress]),
            w.HBox([self.image, w.VBox([self.strip, self.probabilities_box])]), self.output,
        ]), "lab6-picker")
        self._show_chosen()

    def _build_label_grid(self, w) -> None:
        """The 3x8 grid: a header row of colours, then one row of toggle buttons per shape."""
        self.buttons: dict[str, w.ToggleButton] = {}
        cells = [w.HTML("")] + [w.HTML(picker_view.colour_heading(c)) for c in COLOURS]
        for shape in SHAPES:
            cells.append(w.HTML(picker_view.shape_heading(shape)))
            for colour in COLOURS:
                label = f"{colour} {shape}"
                button = _classed(w.ToggleButton(value=False, description=label,
                                                 tooltip=f"{label} (index {label_index(label)})",
                                                 layout=w.Layout(width="auto", height="34px")),
                                  "lab6-label", f"lab6-label-{colour}-{shape}")
                button.style.text_color = picker_view.text_colour(colour)
                button.observe(self._on_toggle, names="value")
                self.buttons[label] = button
                cells.append(button)
        self.style_box = w.HTML(f"<style>{picker_view.swatch_css()}</style>", layout=w.Layout(height="0px"))
        self.grid = _classed(w.GridBox(cells, layout=w.Layout(
            grid_template_columns="70px repeat(8, minmax(112px, 1fr))", grid_gap="4px")), "lab6-grid")
        self.message_box = _classed(w.HTML(""), "lab6-message")
        self.chosen_box = _classed(w.HTML(""), "lab6-chosen")

    def _build_controls(self, w, sampling: Sampling) -> None:
        """The sampling controls, the buttons, and the boxes a result is shown in."""
        sampler = sampling.sampler or self.own_sampler[0]
        self.guidance_input = _classed(w.FloatSlider(value=sampling.guidance_scale, min=0.0, max=8.0, step=0.25,
                                                     description="guidance w", continuous_update=False),
                                       "lab6-guidance")
        self.sampler_input = _classed(w.Dropdown(options=[(SAMPLER_NAMES[s], s) for s in SAMPLERS], value=sampler,
                                                 description="sampler"), "lab6-sampler")
        self.steps_input = _classed(w.BoundedIntText(value=sampling.steps or self.steps_for(sampler), min=1, max=1000,
                                                     description="steps"), "lab6-steps")
        self.seed_input = _classed(w.IntText(value=sampling.seed, description="seed"), "lab6-seed")
        # no indent and the label's own width: the default description box cuts a long label off
        refine = "refine at 64 px (a model with a refiner)"
        self.refine_input = _classed(w.Checkbox(value=sampling.refine, description=refine, indent=False,
                                                style={"description_width": "initial"}, layout=w.Layout(width="auto")),
                                     "lab6-refine")
        self.sampler_input.observe(self._on_sampler, names="value")

        def button(description: str, icon: str, css_class: str, action, **style):
            clickable = _classed(w.Button(description=description, icon=icon, **style), css_class)
            clickable.on_click(lambda _: action())
            return clickable

        self.generate_button = button("Generate", "paint-brush", "lab6-generate", self._on_generate,
                                      button_style="primary")
        self.surprise_button = button("Surprise me", "random", "lab6-surprise", self.surprise)
        self.clear_button = button("Clear", "times", "lab6-clear", self.clear)
        self.progress = _classed(w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="320px")),
                                 "lab6-progress")
        self.image = _classed(w.Image(format="png", layout=w.Layout(width="256px", height="256px", display="none")),
                              "lab6-image")
        self.strip = _classed(w.Image(format="png", layout=w.Layout(display="none")), "lab6-strip")
        self.probabilities_box = _classed(w.HTML(""), "lab6-probabilities")
        self.output = w.Output()  # errors from callbacks land here instead of vanishing

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- the selection rules ------------------------------------------------------------------------------------
    def select(self, label: str) -> bool:
        """Choose ``label``; refused (False, with a message) when it would make more than three."""
        label_index(label)  # unknown names raise ConditionError with suggestions
        if label in self.selected:
            return True
        if len(self.selected) >= self.MAX_CHOSEN:
            self._set_button(label, False)
            self._say(f"At most {self.MAX_CHOSEN} objects (the training scenes hold 1-{self.MAX_CHOSEN}): "
                      f"{label} was not added. Unselect one of {', '.join(self.selected)} first.", refused=True)
            return False
        self.selected.append(label)
        self._set_button(label, True)
        self._say("")
        return True

    def deselect(self, label: str) -> None:
        if label in self.selected:
            self.selected.remove(label)
        self._set_button(label, False)
        self._say("")

    def toggle(self, label: str) -> bool:
        """Flip ``label``; returns whether it is chosen afterwards."""
        if label in self.selected:
            self.deselect(label)
            return False
        return self.select(label)

    def set_condition(self, labels) -> None:
        """Replace the selection (1-3 distinct labels)."""
        labels = list(labels)
        if not 1 <= len(labels) <= self.MAX_CHOSEN or len(set(labels)) != len(labels):
            raise ConditionError(f"a condition here holds 1-{self.MAX_CHOSEN} distinct labels, got {labels!r}")
        for label in labels:
            label_index(label)
        self.clear()
        for label in labels:
            self.select(label)

    def clear(self) -> None:
        for label in list(self.selected):
            self.deselect(label)
        self._say("")

    def surprise(self) -> list[str]:
        """Choose a random valid condition: 1-3 distinct labels."""
        condition = random_condition(self.rng)
        self.set_condition(condition)
        self._say(f"Surprise: {', '.join(condition)}")
        return condition

    def _set_button(self, label: str, value: bool) -> None:
        button = self.buttons[label]
        self._syncing = True
        try:
            button.value = value
            button.icon = "check" if value else ""
        finally:
            self._syncing = False
        self._show_chosen()

    def _on_toggle(self, change) -> None:
        if self._syncing:
            return
        label = change["owner"].description
        if change["new"]:
            self.select(label)
        else:
            self.deselect(label)

    def steps_for(self, sampler: str) -> int:
        """The steps offered for ``sampler``: a distilled model's own with its sampler, else :data:`PICKER_STEPS`."""
        own, own_steps = self.own_sampler
        return own_steps if sampler == own and own_steps else PICKER_STEPS[sampler]

    def _on_sampler(self, change) -> None:
        self.steps_input.value = self.steps_for(change["new"])

    def _say(self, text: str, refused: bool = False) -> None:
        self.message = text
        self.message_box.value = picker_view.message_html(text, refused)
        if refused:
            self.message_box.add_class("lab6-refused")
        else:
            self.message_box.remove_class("lab6-refused")

    def _show_chosen(self) -> None:
        self.chosen_box.value = picker_view.chosen_html(self.selected, self.MAX_CHOSEN)

    # -- the model and the evaluator, loaded when first needed ------------------------------------------------
    @cached_property
    def pipe(self):
        """The model: the pipeline given, else the folder given (or the shipped model) loaded at the first use."""
        from .loading import load_pipeline

        return load_pipeline(self._model_arg, device=self.device)

    @cached_property
    def evaluator(self):
        """The evaluator, or None (the reason in ``evaluator_error``)."""
        from .scoring import one_evaluator

        evaluator, error = one_evaluator(self._evaluator_arg, self.data_root, self.device)
        self.evaluator_error = error or self.evaluator_error
        return evaluator

    # -- generate ---------------------------------------------------------------------------------------------
    def generate(self) -> PickerResult:
        """Draw one image for the chosen labels with the current controls; score it when an evaluator exists."""
        if not self.selected:
            raise ConditionError("choose 1-3 objects first (or press Surprise me)")
        sampling = self.sampling.replace(sampler=self.sampler_input.value, steps=int(self.steps_input.value),
                                         guidance_scale=float(self.guidance_input.value),
                                         seed=int(self.seed_input.value), refine=self.refine_input.value)
        self.progress.max, self.progress.value = sampling.steps, 0

        def advance(done: int, total: int) -> None:
            self.progress.max, self.progress.value = total, done  # total: both stages' steps

        picked = PickerResult.draw(self.pipe, list(self.selected), sampling, self.strip_frames, callback=advance)
        picked.score(self.evaluator, self.evaluator_error)
        self.last = picked
        self._show_result(picked)
        return picked

    def _on_generate(self) -> None:
        self.generate_button.disabled = True
        self.generate_button.description = "Generating..."
        self.image.remove_class("lab6-generated")
        try:
            self.generate()
        except Exception as err:  # shown to the student, never swallowed silently
            self._say(f"Could not generate: {err}", refused=True)
            with self.output:
                raise
        finally:
            self.generate_button.disabled = False
            self.generate_button.description = "Generate"

    def _show_result(self, picked: PickerResult) -> None:
        self.image.value = png_bytes(picked.pixels, scale=4)
        self.strip.value = png_bytes(picked.strip, scale=1)
        self.image.layout.display = ""
        self.strip.layout.display = ""
        self.image.add_class("lab6-generated")
        self.probabilities_box.value = picker_view.result_html(picked)
        self._say(f"Generated {', '.join(picked.condition)} in {picked.seconds:.1f} s")

