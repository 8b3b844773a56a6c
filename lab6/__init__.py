"""lab6: a conditional DDPM that draws i-CLEVR scenes from multi-label conditions.

Modules, one idea each: ``labels`` (the 24 labels and conditions), ``data`` (data roots, the in-memory
dataset), ``synthetic`` (the built-in renderer), ``model`` (the conditional UNet), ``diffusion``
(schedules, loss, samplers), ``config`` (recipes), ``train`` (the accelerate loop), ``pipeline``
(model folder -> images), ``evaluator`` (the ResNet18 scorer), ``report`` (figures and tables),
``figures`` (every notebook figure, as PNG + PDF), ``widgets`` (the notebook label picker), ``cli`` (the
``lab6`` command).
"""

__version__ = "0.1.0"
