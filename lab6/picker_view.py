"""What the label picker (``lab6.widgets.LabelPicker``) draws and shows: one image as a :class:`PickerResult`
(drawn, timed, scored by an evaluator), and the HTML and CSS of the picker's boxes (the CLEVR-coloured
swatches, the chosen labels, messages, a result's caption and probability table).

Apart from the widgets, so that what the picker draws and shows is plain data and strings, read and tested
without ipywidgets; the picker reads its controls and puts these into its boxes.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

import numpy as np

from .figures.denoising import denoising_strip
from .images import to_uint8
from .labels import CLEVR_RGB, COLOURS, LABELS, SHAPES, clevr_hex, label_index
from .sampling import generate

TITLE = "<h3 style='margin:4px 0'>lab6 label picker: choose 1-3 objects</h3>"


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

    @classmethod
    def draw(cls, pipe, condition: list[str], sampling, strip_frames: int = 8, callback=None) -> PickerResult:
        """One image for ``condition`` as ``sampling`` says, timed, with a strip of about ``strip_frames`` steps;
        ``callback(done, total)`` after each step."""
        start = time.perf_counter()
        result = generate(pipe, [condition], sampling, record_every=max(1, -(-sampling.steps // strip_frames)),
                          progress=False, callback=callback)
        return cls(condition, result.images[0], to_uint8(result.images[:1])[0].numpy(), denoising_strip(result),
                   time.perf_counter() - start, result.sampling)

    def score(self, evaluator, why_none: str | None = None) -> None:
        """Fill in ``probabilities`` and ``top`` from an ``evaluator.Evaluator``, or (None) say why there are none."""
        if evaluator is None:
            self.evaluator_message = f"No evaluator, so no probabilities: {why_none}"
            return
        probabilities = evaluator.probabilities(self.image[None])[0]
        self.probabilities = {n: float(probabilities[label_index(n)]) for n in self.condition}
        self.top = [(LABELS[j], float(probabilities[j])) for j in probabilities.topk(len(self.condition)).indices]


def text_colour(colour: str) -> str:
    """Black or white, whichever reads on the CLEVR colour (by its luma)."""
    r, g, b = CLEVR_RGB[colour]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def swatch_css() -> str:
    """CSS that paints each label button in its CLEVR colour and marks the chosen ones.

    A toggle button's style has no background colour: the swatches are CSS rules on the buttons' stable classes.
    """
    rules = [f".lab6-picker .lab6-label-{colour}-{shape} {{ background-color: {clevr_hex(colour)} !important; "
             f"color: {text_colour(colour)} !important; }}" for shape in SHAPES for colour in COLOURS]
    rules.append(".lab6-picker .lab6-label { opacity: 0.8; font-size: 12px; }")
    rules.append(".lab6-picker .lab6-label.mod-active { opacity: 1; "
                 "box-shadow: inset 0 0 0 3px #000, inset 0 0 0 5px #fff !important; }")
    return "\n".join(rules)


def colour_heading(colour: str) -> str:
    """A column heading of the grid: a small square of the colour, then its name."""
    swatch = (f"<span style='display:inline-block;width:0.9em;height:0.9em;margin-right:4px;vertical-align:-1px;"
              f"background:{clevr_hex(colour)};border:1px solid #333'></span>")
    return f"<div style='text-align:center'>{swatch}<b>{colour}</b></div>"


def shape_heading(shape: str) -> str:
    return f"<div style='padding-top:6px'><b>{shape}</b></div>"


def chosen_html(selected: list[str], most: int) -> str:
    """The chosen labels as chips in their colours, and how many more fit."""
    if not selected:
        return "chosen: none yet; click up to three objects, or Surprise me"
    chips = "".join(f"<span style='background:{clevr_hex(n.split()[0])};color:{text_colour(n.split()[0])};"
                    f"padding:2px 8px;border-radius:9px;margin-right:4px'>{n}</span>" for n in selected)
    return f"chosen ({len(selected)}/{most}): {chips}"


def message_html(text: str, refused: bool = False) -> str:
    colour = "#b00020" if refused else "#333"
    return f"<span style='color:{colour}'>{html.escape(text)}</span>" if text else ""


def result_html(picked: PickerResult) -> str:
    """A result: how it was drawn, then the evaluator's probability of each chosen label and its
    top-k, or why there are none."""
    condition = picked.condition
    caption = (f"<div style='font-size:90%'>{html.escape(', '.join(condition))}: {picked.sampling.describe()}, "
               f"seed {picked.sampling.seed}, {picked.seconds:.1f} s.<br>"
               "Strip: x_t (top) and predicted x_0 (bottom) along the run.</div>")
    if picked.probabilities is None:
        return caption + f"<p><i>{html.escape(picked.evaluator_message or '')}</i></p>"
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td><div style='background:{clevr_hex(n.split()[0])};height:10px;"
                   f"width:{max(1, round(120 * p))}px'></div></td><td>{p:.3f}</td></tr>"
                   for n, p in picked.probabilities.items())
    top = ", ".join(f"{html.escape(n)} ({p:.2f})" for n, p in picked.top)
    return (caption + "<table class='lab6-probability-table'><tr><th>chosen label</th><th></th>"
            f"<th>evaluator p</th></tr>{rows}</table>"
            f"<div>evaluator top-{len(condition)}: {top} -> {picked.hits}/{len(condition)} found</div>")
