"""Notebook widgets: the interactive label picker, and a slider over the steps of a denoising run.

``LabelPicker(model)`` shows a 3x8 grid of toggle buttons (rows: shapes, columns: colours, each in its
CLEVR colour), at most three chosen at once; guidance, sampler, steps and seed controls; a Generate
button (progress bar, then the 64x64 image enlarged, its denoising strip and the evaluator's probability
for each chosen label) and a "surprise me" button. The rules and the generation are plain methods
(:meth:`LabelPicker.select`, :meth:`LabelPicker.surprise`, :meth:`LabelPicker.generate`), so they are
tested without a browser; the widgets carry stable CSS classes (``lab6-label``, ``lab6-label-<colour>-<shape>``,
``lab6-generate``, ``lab6-surprise``, ``lab6-clear``, ``lab6-message``, ``lab6-image``, ``lab6-strip``,
``lab6-probabilities``, ``lab6-progress``) for browser tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DEFAULT_GUIDANCE
from .figures.denoising import denoising_frame, denoising_strip, frame_title
from .images import png_bytes
from .labels import (
    CLEVR_RGB,
    COLOURS,
    LABELS,
    MAX_OBJECTS_TRAINED,
    SHAPES,
    ConditionError,
    clevr_hex,
    label_index,
    random_condition,
)
from .samplers import DEFAULT_STEPS, SAMPLER_NAMES, SAMPLERS
from .sampling import Sampling

#: Steps per sampler when the picker opens or its sampler changes: DPM-Solver++ at 10 steps instead of lab6's 20,
#: half the wait for an image that is only slightly softer (docs/samplers.md#picker-steps; its time on 2 cores:
#: docs/throughput.md#one-image). The report keeps 20.
PICKER_STEPS = {**DEFAULT_STEPS, "dpmsolver": 10}


def _text_colour(colour: str) -> str:
    r, g, b = CLEVR_RGB[colour]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def _swatch(colour: str) -> str:
    return (f"<span style='display:inline-block;width:0.9em;height:0.9em;margin-right:4px;vertical-align:-1px;"
            f"background:{clevr_hex(colour)};border:1px solid #333'></span>")


def swatch_css() -> str:
    """CSS that paints each label button in its CLEVR colour and marks the chosen ones."""
    rules = [f".lab6-picker .lab6-label-{colour}-{shape} {{ background-color: {clevr_hex(colour)} !important; "
             f"color: {_text_colour(colour)} !important; }}" for shape in SHAPES for colour in COLOURS]
    rules.append(".lab6-picker .lab6-label { opacity: 0.8; font-size: 12px; }")
    rules.append(".lab6-picker .lab6-label.mod-active { opacity: 1; "
                 "box-shadow: inset 0 0 0 3px #000, inset 0 0 0 5px #fff !important; }")
    return "\n".join(rules)


@dataclass
class PickerResult:
    condition: list[str]
    image: object  # (3, 64, 64) tensor in [-1, 1]
    pixels: np.ndarray  # (64, 64, 3) uint8
    strip: np.ndarray  # uint8 denoising strip: x_t over predicted x_0
    seconds: float
    sampling: object  # sampling.Sampling: how it was drawn
    probabilities: dict[str, float] | None = None  # the evaluator's probability of each chosen label
    top: list[tuple[str, float]] | None = None  # the evaluator's top-k labels (k = number chosen)
    evaluator_message: str | None = None  # why there are no probabilities

    @property
    def hits(self) -> int | None:
        return None if self.top is None else len({n for n, _ in self.top} & set(self.condition))


def _with_class(widget, css_class: str):
    """``widget`` with a CSS class: the stable name the swatch rules and the browser test find it by."""
    widget.add_class(css_class)
    return widget


class LabelPicker:
    """Pick 1-3 objects, generate a scene, see what the evaluator sees.

    ``model``: a model or run folder, a ``pipeline.LoadedModel``, or None for the shipped model (loaded at
    the first Generate). ``evaluator``: an ``evaluator.Evaluator``, a checkpoint path, None for the
    default (the data root's ``checkpoint.pth``, else the shipped proxy), or False for none.
    """

    MAX_CHOSEN = MAX_OBJECTS_TRAINED

    def __init__(self, model=None, *, evaluator=None, data_root: str | Path | None = None,
                 sampling: Sampling | None = None, device: str = "cpu", strip_frames: int = 8,
                 rng_seed: int | None = None):
        import ipywidgets as w

        from .pipeline import Lab6Pipeline

        self._model_arg = model
        self.loaded = model if isinstance(model, Lab6Pipeline) else None
        self._evaluator_arg = evaluator
        self._evaluator = None
        self._evaluator_error: str | None = None if evaluator is not False else "evaluator turned off"
        self._evaluator_tried = evaluator is False
        self.data_root = data_root
        self.device = device
        self.strip_frames = strip_frames
        self.rng = np.random.default_rng(rng_seed)
        self.selected: list[str] = []
        self.message = ""
        self.last: PickerResult | None = None
        self._syncing = False
        sampling = sampling or Sampling()
        if sampling.guidance_scale is None:
            model_scale = self.loaded.guidance_scale if self.loaded is not None else DEFAULT_GUIDANCE
            sampling = sampling.replace(guidance_scale=model_scale)

        self._build_label_grid(w)
        self._build_sampling_controls(w, sampling)
        self._build_actions_and_results(w)
        self.widget = _with_class(w.VBox([
            self.style_box, w.HTML("<h3 style='margin:4px 0'>lab6 label picker: choose 1-3 objects</h3>"),
            self.grid, self.chosen_box, self.message_box,
            w.HBox([self.guidance_input, self.sampler_input]), w.HBox([self.steps_input, self.seed_input]),
            self.refine_input,
            w.HBox([self.generate_button, self.surprise_button, self.clear_button, self.progress]),
            w.HBox([self.image, w.VBox([self.strip, self.probabilities_box])]), self.output,
        ]), "lab6-picker")
        self._show_chosen()

    def _build_label_grid(self, w) -> None:
        """The 3x8 grid: a header row of colours, then one row of toggle buttons per shape."""
        self.buttons: dict[str, w.ToggleButton] = {}
        cells = [w.HTML("")] + [w.HTML(f"<div style='text-align:center'>{_swatch(c)}<b>{c}</b></div>")
                                for c in COLOURS]
        for shape in SHAPES:
            cells.append(w.HTML(f"<div style='padding-top:6px'><b>{shape}</b></div>"))
            for colour in COLOURS:
                label = f"{colour} {shape}"
                button = w.ToggleButton(value=False, description=label,
                                        tooltip=f"{label} (index {label_index(label)})",
                                        layout=w.Layout(width="auto", height="34px"))
                button.style.text_color = _text_colour(colour)
                _with_class(_with_class(button, "lab6-label"), f"lab6-label-{colour}-{shape}")
                button.observe(self._on_toggle, names="value")
                self.buttons[label] = button
                cells.append(button)
        # A toggle button's style has no background colour: the swatches are CSS rules on the stable classes.
        self.swatch_css = swatch_css()
        self.style_box = w.HTML(f"<style>{self.swatch_css}</style>", layout=w.Layout(height="0px"))
        self.grid = _with_class(w.GridBox(cells, layout=w.Layout(
            grid_template_columns="70px repeat(8, minmax(112px, 1fr))", grid_gap="4px")), "lab6-grid")
        self.message_box = _with_class(w.HTML(""), "lab6-message")
        self.chosen_box = _with_class(w.HTML(""), "lab6-chosen")

    def _build_sampling_controls(self, w, sampling: Sampling) -> None:
        sampler = sampling.sampler
        self.guidance_input = _with_class(w.FloatSlider(value=sampling.guidance_scale, min=0.0, max=8.0, step=0.25,
                                                        description="guidance w", continuous_update=False),
                                          "lab6-guidance")
        self.sampler_input = _with_class(w.Dropdown(options=[(SAMPLER_NAMES[s], s) for s in SAMPLERS], value=sampler,
                                                    description="sampler"), "lab6-sampler")
        self.steps_input = _with_class(w.BoundedIntText(value=sampling.steps or PICKER_STEPS[sampler], min=1, max=1000,
                                                        description="steps"), "lab6-steps")
        self.seed_input = _with_class(w.IntText(value=sampling.seed, description="seed"), "lab6-seed")
        # no indent and the label's own width: the default description box cuts a long label off
        self.refine_input = _with_class(w.Checkbox(value=sampling.refine,
                                                   description="refine at 64 px (a model with a refiner)",
                                                   indent=False, style={"description_width": "initial"},
                                                   layout=w.Layout(width="auto")), "lab6-refine")
        self.sampler_input.observe(self._on_sampler, names="value")

    def _build_actions_and_results(self, w) -> None:
        self.generate_button = _with_class(w.Button(description="Generate", button_style="primary",
                                                    icon="paint-brush"), "lab6-generate")
        self.generate_button.on_click(lambda _: self._on_generate())
        self.surprise_button = _with_class(w.Button(description="Surprise me", icon="random"), "lab6-surprise")
        self.surprise_button.on_click(lambda _: self.surprise())
        self.clear_button = _with_class(w.Button(description="Clear", icon="times"), "lab6-clear")
        self.clear_button.on_click(lambda _: self.clear())
        self.progress = _with_class(w.IntProgress(value=0, min=0, max=1, description="",
                                                  layout=w.Layout(width="320px")), "lab6-progress")
        self.image = _with_class(w.Image(format="png", layout=w.Layout(width="256px", height="256px",
                                                                       display="none")), "lab6-image")
        self.strip = _with_class(w.Image(format="png", layout=w.Layout(display="none")), "lab6-strip")
        self.probabilities_box = _with_class(w.HTML(""), "lab6-probabilities")
        self.output = w.Output()  # errors from callbacks land here instead of vanishing

    # -- display ----------------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- the selection rules ------------------------------------------------------------------------------------
    @property
    def condition(self) -> list[str]:
        return list(self.selected)

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

    def _on_sampler(self, change) -> None:
        self.steps_input.value = PICKER_STEPS[change["new"]]

    def _say(self, text: str, refused: bool = False) -> None:
        import html

        self.message = text
        colour = "#b00020" if refused else "#333"
        self.message_box.value = f"<span style='color:{colour}'>{html.escape(text)}</span>" if text else ""
        if refused:
            self.message_box.add_class("lab6-refused")
        else:
            self.message_box.remove_class("lab6-refused")

    def _show_chosen(self) -> None:
        chips = "".join(
            f"<span style='background:{clevr_hex(n.split()[0])};color:{_text_colour(n.split()[0])};padding:2px 8px;"
            f"border-radius:9px;margin-right:4px'>{n}</span>" for n in self.selected)
        self.chosen_box.value = (f"chosen ({len(self.selected)}/{self.MAX_CHOSEN}): {chips}" if self.selected
                                 else "chosen: none yet; click up to three objects, or Surprise me")

    # -- the model and the evaluator, loaded when first needed ------------------------------------------------
    def model(self):
        if self.loaded is None:
            from .loading import load_pipeline

            self.loaded = load_pipeline(self._model_arg, device=self.device)
        return self.loaded

    def evaluator(self):
        """The evaluator, or None (the reason in ``evaluator_error``)."""
        if not self._evaluator_tried:
            self._evaluator_tried = True
            from .evaluator import Evaluator, EvaluatorLoadError, load_evaluators

            if isinstance(self._evaluator_arg, Evaluator):
                self._evaluator = self._evaluator_arg
            else:
                try:  # the picker shows one evaluator's view: the first (the ResNet18's by default)
                    paths = [self._evaluator_arg] if self._evaluator_arg else None
                    self._evaluator = load_evaluators(paths, self.data_root, device=self.device)[0]
                except EvaluatorLoadError as err:
                    self._evaluator_error = str(err)
        return self._evaluator

    @property
    def evaluator_error(self) -> str | None:
        self.evaluator()
        return self._evaluator_error

    # -- generate ---------------------------------------------------------------------------------------------
    def generate(self) -> PickerResult:
        """Draw one image for the chosen labels with the current controls; score it when an evaluator exists."""
        from .images import to_uint8
        from .sampling import generate

        if not self.selected:
            raise ConditionError("choose 1-3 objects first (or press Surprise me)")
        loaded = self.model()
        condition = list(self.selected)
        sampling = Sampling(self.sampler_input.value, int(self.steps_input.value), float(self.guidance_input.value),
                            seed=int(self.seed_input.value), refine=self.refine_input.value)
        steps = sampling.steps
        start = time.perf_counter()
        self.progress.max, self.progress.value = steps, 0

        def advance(done: int, total: int) -> None:
            self.progress.max, self.progress.value = total, done  # total: both stages' steps

        result = generate(loaded, [condition], sampling, record_every=max(1, -(-steps // self.strip_frames)),
                          progress=False, callback=advance)
        seconds = time.perf_counter() - start
        picked = PickerResult(condition, result.images[0], to_uint8(result.images[:1])[0].numpy(),
                              denoising_strip(result), seconds, result.sampling)
        evaluator = self.evaluator()
        if evaluator is None:
            picked.evaluator_message = f"No evaluator, so no probabilities: {self._evaluator_error}"
        else:
            probabilities = evaluator.probabilities(result.images[:1])[0]
            picked.probabilities = {n: float(probabilities[label_index(n)]) for n in condition}
            picked.top = [(LABELS[j], float(probabilities[j])) for j in probabilities.topk(len(condition)).indices]
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
        import html

        self.image.value = png_bytes(picked.pixels, scale=4)
        self.image.layout.display = ""
        self.image.add_class("lab6-generated")
        self.strip.value = png_bytes(picked.strip, scale=1)
        self.strip.layout.display = ""
        lines = [f"<div style='font-size:90%'>{html.escape(', '.join(picked.condition))}: "
                 f"{picked.sampling.describe()}, seed {picked.sampling.seed}, "
                 f"{picked.seconds:.1f} s.<br>Strip: x_t (top) and predicted x_0 (bottom) along the run.</div>"]
        if picked.probabilities is None:
            lines.append(f"<p><i>{html.escape(picked.evaluator_message or '')}</i></p>")
        else:
            rows = "".join(
                f"<tr><td>{html.escape(n)}</td><td><div style='background:{clevr_hex(n.split()[0])};height:10px;"
                f"width:{max(1, round(120 * p))}px'></div></td><td>{p:.3f}</td></tr>"
                for n, p in picked.probabilities.items())
            top = ", ".join(f"{html.escape(n)} ({p:.2f})" for n, p in picked.top)
            lines.append(f"<table class='lab6-probability-table'><tr><th>chosen label</th><th></th>"
                         f"<th>evaluator p</th></tr>{rows}</table>"
                         f"<div>evaluator top-{len(picked.condition)}: {top} -> {picked.hits}/{len(picked.condition)} "
                         f"found</div>")
        self.probabilities_box.value = "".join(lines)
        self._say(f"Generated {', '.join(picked.condition)} in {picked.seconds:.1f} s")


def denoising_slider(result, scale: int = 3):
    """A slider over the recorded steps of a ``SampleResult``: x_t and the predicted x_0 at that step, enlarged."""
    import ipywidgets as w

    count = len(result.timesteps) + 1
    slider = w.IntSlider(value=0, min=0, max=count - 1, description="frame", continuous_update=True)
    slider.add_class("lab6-denoising-slider")
    noisy, clean = w.Image(format="png"), w.Image(format="png")
    caption = w.HTML()

    def show(change=None) -> None:
        i = slider.value
        x_t, x_0 = denoising_frame(result, i)
        noisy.value, clean.value = png_bytes(x_t, scale), png_bytes(x_0, scale)
        step = "final image" if i == count - 1 else f"{frame_title(result, i)} (frame {i + 1} of {count - 1})"
        caption.value = f"<b>{step}</b>: left x_t, right the model's predicted x_0"

    slider.observe(show, names="value")
    show()
    return w.VBox([slider, caption, w.HBox([noisy, clean])])
