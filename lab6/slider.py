"""A slider over the recorded steps of a denoising run (notebook 03): x_t and the predicted x_0 at each step.

The picker's widgets are in ``lab6.widgets``, which re-exports :func:`denoising_slider` (notebooks import it there).
"""

from __future__ import annotations

from .figures.denoising import denoising_frame, frame_title
from .images import png_bytes


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
