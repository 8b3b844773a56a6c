"""lab6: a conditional DDPM that draws i-CLEVR scenes from multi-label conditions.

Modules, one idea each: ``labels`` (the 24 labels and conditions), ``data`` (data roots, the in-memory
dataset), ``scene``, ``render`` and ``synthetic`` (the built-in synthetic data), ``model`` (the conditional
UNet), ``diffusion`` (schedules, loss, samplers, guidance, starting noise), ``config`` (recipes), ``train``
(the accelerate loop), ``init_from`` (starting a run from a saved model), ``pipeline`` (``Lab6Pipeline``:
conditions -> images), ``sampling`` (a split's images and scores, sweeps), ``run_files`` (model and run
folders, atomic writes), ``images`` (PNG files and grids), ``evaluator`` (evaluators and the official top-k
accuracy), ``proxy`` (training a proxy evaluator), ``fidelity`` (Frechet distance, sharpness, colour cast),
``report`` (grids, denoising figure, accuracy table), ``settings`` (the notebooks' settings), ``figures``
(every notebook figure, as PNG + PDF), ``widgets`` (the notebook label picker), ``cli`` and ``commands``
(the ``lab6`` command).
"""

__version__ = "0.1.0"
