"""Where the course's files are: the data root (``--data-root``, ``$LAB6_DATA``, or the built-in synthetic set) and
its conditions files (test.json, new_test.json, the shipped held-out conditions)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .labels import load_conditions
from .run_files import cache_dir, write_text_atomic

SPLITS = ("test", "new_test")
#: 128 random valid conditions (``lab6.labels.heldout_conditions()``), the same for every data root.
HELDOUT_FILE = Path(__file__).parent / "assets" / "conditions" / "heldout128.json"


def resolve_data_root(data_root: str | Path | None = None, *, need_images: bool = True, progress: bool = True) -> Path:
    """The data root to use: the argument, else ``$LAB6_DATA``, else the built-in synthetic set (rendered once).

    Args:
        data_root: a folder in the course layout (objects.json, train.json, test.json, new_test.json, iclevr/).
        need_images: ``False`` where only the conditions files are read (sampling, reports): without a data root
            the synthetic set's conditions files alone are written (once, to the cache) and nothing is rendered.
        progress: show the synthetic set's render progress.

    Returns:
        The data root's path.
    """
    chosen = data_root or os.environ.get("LAB6_DATA")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data root {root} does not exist: point --data-root / LAB6_DATA at the folder "
                                    "that holds the course's files (objects.json, train.json, test.json, "
                                    "new_test.json, iclevr/)")
        if not (root / "train.json").is_file() and not (root / "test.json").is_file():
            raise FileNotFoundError(
                f"data root {root} holds neither train.json nor test.json: point --data-root / LAB6_DATA at a folder "
                "in the course layout (objects.json, train.json, test.json, new_test.json, iclevr/)"
            )
        return root
    if not need_images:
        root = synthetic_conditions_root()
        print(f"lab6: no data root given: drawing the built-in synthetic conditions ({root}), not the course's "
              "test.json / new_test.json; --data-root COURSE_DATA (make demo DATA=COURSE_DATA) draws those")
        return root
    from .synthetic import default_data_root

    return default_data_root(progress=progress)


def synthetic_conditions_root(seed: int = 0) -> Path:
    """A folder holding only the synthetic set's test.json / new_test.json (``synthetic.condition_sets``)."""
    from .synthetic import VERSION, condition_sets

    root = cache_dir() / f"synthetic-v{VERSION}-conditions-s{seed}"
    if not (is_synthetic(root) and all((root / f"{split}.json").is_file() for split in SPLITS)):
        root.mkdir(parents=True, exist_ok=True)
        files = {f"{split}.json": conditions for split, conditions in condition_sets(seed).items()}
        files[".complete"] = {"generator": "lab6.synthetic", "version": VERSION, "seed": seed, "images": False}
        for name, content in files.items():  # the marker last: a folder without it is written again
            write_text_atomic(root / name, json.dumps(content))
    return root


def is_synthetic(root: str | Path) -> bool:
    """Whether ``root`` holds lab6's built-in synthetic data (rendered, or its conditions files alone) rather
    than the course's: its ``.complete`` marker says ``lab6.synthetic`` made it."""
    try:
        return json.loads((Path(root) / ".complete").read_text()).get("generator") == "lab6.synthetic"
    except (OSError, ValueError, AttributeError):
        return False


def conditions_file(root: str | Path, split: str) -> Path:
    """``<root>/<split>.json`` for a split name, ``heldout`` for the shipped held-out set, or a .json path."""
    if split == "heldout":
        return HELDOUT_FILE
    if Path(split).suffix == ".json" and Path(split).is_file():
        return Path(split)
    path = Path(root) / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no conditions file {path} (splits are {', '.join(SPLITS)}, heldout, or a path to a .json file)")
    return path


def evaluator_checkpoint(root: str | Path | None) -> Path | None:
    """The data root's official ``checkpoint.pth``, when it has one."""
    if root is None:
        return None
    path = Path(root) / "checkpoint.pth"
    return path if path.is_file() else None


def load_split(root: str | Path, split: str) -> list[list[str]]:
    """The conditions of a split of a data root (``test``, ``new_test``) or of a conditions file."""
    return load_conditions(conditions_file(root, split))
