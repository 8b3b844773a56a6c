"""Evaluator files: reading them without running their code, writing them whole, and where the shipped ones are.

An official evaluator is ``checkpoint.pth``: ``{'model': state_dict}``, a pickle that ``torch.load`` could let run
code, so it is read with ``weights_only=True`` and refused by name when it holds anything but tensors. Proxies of
other architectures are fp16 ``.safetensors`` with the architecture in the file's metadata.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

OFFICIAL_ARCH = "resnet18"
#: The proxy evaluators shipped with the package: ``proxy_<architecture>.safetensors`` (fp16, to stay small).
SHIPPED_DIR = Path(__file__).parent / "assets" / "evaluator"


class EvaluatorLoadError(RuntimeError):
    """An evaluator checkpoint that cannot (or must not) be loaded."""


def shipped_evaluator_path(arch: str) -> Path:
    """Where the package keeps (or would keep) its proxy evaluator of architecture ``arch``."""
    return SHIPPED_DIR / f"proxy_{arch}.safetensors"


def shipped_evaluator_paths() -> list[Path]:
    """The shipped proxies: the ResNet18 first, then those of other architectures (by name)."""
    others = sorted(p for p in SHIPPED_DIR.glob("proxy_*.safetensors") if p != shipped_evaluator_path(OFFICIAL_ARCH))
    return [p for p in [shipped_evaluator_path(OFFICIAL_ARCH), *others] if p.is_file()]


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            # A file without metadata is the first shipped proxy, which predates --arch: a ResNet18.
            arch = (f.metadata() or {}).get("arch", OFFICIAL_ARCH)
            return {k: f.get_tensor(k).float() for k in f.keys()}, arch
    except (SafetensorError, OSError) as err:
        raise EvaluatorLoadError(f"could not read {path} as safetensors (truncated or not an evaluator?): "
                                 f"{err}") from None


def _read_torch_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    import zipfile

    with path.open("rb") as f:
        is_pickle = f.read(1) == b"\x80"  # the protocol opcode that starts a (legacy) torch.save pickle
    if not (zipfile.is_zipfile(path) or is_pickle):
        raise EvaluatorLoadError(f"could not read {path} as a torch checkpoint: it is neither the zip archive that "
                                 "torch.save writes nor a pickle (a different or damaged file?)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:160]
        raise EvaluatorLoadError(
            f"refused to load {path}: it holds pickled objects other than tensors, which could run code on load "
            f"({detail}). An evaluator checkpoint is {{'model': state_dict}} of plain tensors"
        ) from None
    except Exception as err:  # torch.load fails in many ways on a file that is not a checkpoint
        details = str(err).splitlines()[0] if str(err) else "no details"
        raise EvaluatorLoadError(f"could not read {path} as a torch checkpoint (truncated or not one?): "
                                 f"{type(err).__name__}: {details}") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluatorLoadError(f"{path} is not in the official format {{'model': state_dict}}")
    return state


def read_evaluator_file(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict on the CPU, architecture) of an evaluator file: ``.pth`` (official, ResNet18) or
    ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise EvaluatorLoadError(f"evaluator checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch_checkpoint(path), OFFICIAL_ARCH


def save_evaluator(model: nn.Module, path: str | Path, arch: str = OFFICIAL_ARCH) -> None:
    """Save in the official format (``.pth``: ``{'model': state_dict}``, ResNet18 only) or as fp16
    ``.safetensors`` with the architecture in the file's metadata. Written to a temporary file, then renamed."""
    from .run_files import atomic_path

    path = Path(path)
    if path.suffix not in (".pth", ".safetensors"):
        raise ValueError(f"an evaluator file ends in .pth (official format) or .safetensors, got {path.name!r}")
    if path.suffix == ".pth" and arch != OFFICIAL_ARCH:
        raise ValueError(f"the official .pth format holds a ResNet18; save a {arch} as .safetensors "
                         f"(e.g. {path.with_suffix('.safetensors')})")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()},
                      str(tmp), metadata={"arch": arch, "format": "lab6-evaluator"})
        else:
            torch.save({"model": state}, tmp)
