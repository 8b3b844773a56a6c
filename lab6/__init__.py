"""lab6: a conditional DDPM that draws i-CLEVR scenes from multi-label conditions.

The course's parts, read first: ``data`` (the training set decoded once into memory), ``model`` (the conditional
UNet), ``diffusion`` (the noise schedule, the starting noise, the training loss), ``pipeline`` (``Lab6Pipeline``:
conditions -> images, classifier-free guided), ``train`` (the accelerate loop), ``config`` (the recipe's knobs) and
``evaluator`` (the classifier and the official top-k accuracy).

Beside them, one room each: ``samplers`` (schedulers by name), ``refiner/`` (the 64-px stage and its pipeline),
``loading`` (model folders), ``presets`` (named recipes), ``init_from`` (starting from a saved model),
``train_state``, ``data_root`` (where the course files are), ``data_statistics``, ``labels`` (the 24 labels and
conditions), ``run_files`` (run folders, atomic writes), ``images`` (PNG files and grids), ``evaluator_files`` and
``scoring`` (evaluator files; scoring with several), ``proxy`` (training a proxy evaluator), ``fidelity`` (colour cast,
sharpness), ``scene``, ``geometry``, ``render`` and ``synthetic`` (the built-in synthetic data), ``sampling`` (the
``Sampling`` settings, ``generate``, a split's images and scores, sweeps), ``report`` (grids, denoising figure,
accuracy table), ``settings`` (the notebooks' settings), ``figures`` (every notebook figure, as PNG + PDF),
``widgets``, ``picker_view`` and ``slider`` (the notebook label picker), ``cli``, ``cli_runner`` and ``commands``
(the ``lab6`` command).
"""

__version__ = "0.1.0"
