"""Every bad input ends in one line, ``lab6 VERB: error: <what, the value, what is allowed>``, and exit 2."""

import json
import re

import pytest

from lab6.cli import EXPECTED_ERRORS, main
from lab6.evaluator import EvaluatorLoadError, build_classifier, save_evaluator
from lab6.labels import ConditionError
from lab6.loading import ModelLoadError
from lab6.run_files import ModelNotFoundError


@pytest.fixture
def fails_with(capsys, monkeypatch):
    """``fails_with(argv, error, *fragments)``: ``lab6 ARGV`` ends in one line, ``lab6 VERB: error: ...``, with exit
    status 2; the verb raised ``error`` itself (its exact class, one the CLI expects), not an unforeseen error that
    the CLI's catch-all turned into a line; and the line holds each fragment."""
    from lab6 import commands

    raised = []
    for name in [n for n in vars(commands) if n.startswith("cmd_")]:
        def recording(args, verb=getattr(commands, name)):
            try:
                return verb(args)
            except Exception as err:
                raised.append(err)
                raise
        monkeypatch.setattr(commands, name, recording)

    def check(argv, error, *fragments):
        raised.clear()
        assert main(argv) == 2
        printed = capsys.readouterr().err.strip()
        assert "Traceback" not in printed, printed
        err = printed.splitlines()[-1]  # progress bars may come first; the failure is one closing line
        assert err.startswith(f"lab6 {argv[0]}: error: "), printed
        assert len(raised) == 1, raised
        assert type(raised[0]) is error and isinstance(raised[0], EXPECTED_ERRORS), \
            f"expected {error.__name__}, got {type(raised[0]).__name__}: {raised[0]}"
        assert "(run again with --debug for the traceback)" not in err, err  # the catch-all's mark
        for fragment in fragments:
            assert fragment in err, err
        return err
    return check


@pytest.mark.parametrize("conditions, fragment", [
    ([["red cone"]], "condition 0: unknown label 'red cone'"),
    ([["red cube", "red cube"]], "'red cube' appears twice"),
    ([["red cube", "blue cube", "gray cube", "cyan cube", "green cube", "brown cube"]], "at most 5 are allowed"),
    ([], "no conditions to draw"),
    ([[]], "empty condition"),
    ({"a": ["red cube"]}, "must hold a JSON list of lists of label names"),
    ([["red cube", 3]], "must hold a JSON list of lists of label names"),
])
def test_bad_conditions(tiny_run, tmp_path, fails_with, conditions, fragment):
    path = tmp_path / "conditions.json"
    path.write_text(json.dumps(conditions))
    fails_with(["sample", "--model", str(tiny_run), "--conditions", str(path), "--out", str(tmp_path / "o")],
               ConditionError, fragment)
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_conditions_that_are_not_json(tiny_run, tmp_path, fails_with):
    path = tmp_path / "conditions.json"
    path.write_text("[['red cube']")
    fails_with(["sample", "--model", str(tiny_run), "--conditions", str(path), "--out", str(tmp_path / "o")],
               ConditionError, "is not valid JSON")


def test_missing_and_truncated_models(tiny_run, tiny_root, tmp_path, fails_with):
    conditions = str(tiny_root / "test.json")
    fails_with(["sample", "--model", str(tmp_path / "nothing"), "--conditions", conditions, "--out",
                        str(tmp_path / "o")], ModelNotFoundError, "neither a model folder")
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_run / "model", model)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    fails_with(["sample", "--model", str(model), "--conditions", conditions, "--out", str(tmp_path / "o")],
               ModelLoadError, f"could not load the model in {model}")


def test_bad_evaluators(tiny_run, tiny_root, tmp_path, capsys, fails_with):
    images = tmp_path / "images"
    assert main(["sample", "--model", str(tiny_run), "--conditions", str(tiny_root / "test.json"), "--out",
                 str(images), "--steps", "2"]) == 0
    capsys.readouterr()
    evaluate = ["evaluate", "--images", str(images), "--conditions", str(tiny_root / "test.json"), "--evaluator"]
    fails_with(evaluate + [str(tmp_path / "missing.pth")], EvaluatorLoadError, "evaluator checkpoint not found")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    fails_with(evaluate + [str(text)], EvaluatorLoadError, "could not read", "as a torch checkpoint")
    wrong = tmp_path / "checkpoint.pth"
    import torch

    torch.save({"model": build_classifier("mobilenet_v3_small").state_dict()}, wrong)
    fails_with(evaluate + [str(wrong)], EvaluatorLoadError, "does not hold resnet18", "expected tensors missing")
    truncated = tmp_path / "proxy.safetensors"
    save_evaluator(build_classifier("resnet18"), truncated)
    truncated.write_bytes(truncated.read_bytes()[:4000])
    fails_with(evaluate + [str(truncated)], EvaluatorLoadError, "could not read", "as safetensors")


def test_image_folders_that_are_missing_short_or_mixed(tiny_root, tmp_path, fails_with):
    from PIL import Image

    evaluate = ["evaluate", "--conditions", str(tiny_root / "test.json"), "--images"]
    fails_with(evaluate + [str(tmp_path / "nowhere")], FileNotFoundError, "no image folder", "lab6 sample --out")
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (64, 64)).save(folder / "0.png")
    fails_with(evaluate + [str(folder)], FileNotFoundError, "of 6 images missing in", "1.png")
    for i in range(1, 6):
        Image.new("RGB", (32, 32) if i == 3 else (64, 64)).save(folder / f"{i}.png")
    fails_with(evaluate + [str(folder)], ValueError, "3.png is 32x32 px, 0.png 64x64", "must share a size")


def test_output_paths_of_the_wrong_kind(tiny_run, tiny_root, tmp_path, fails_with):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    fails_with(["sample", "--model", str(tiny_run), "--conditions", str(tiny_root / "test.json"), "--out",
                        str(a_file), "--steps", "2"], NotADirectoryError, "it is a file, not a folder")
    fails_with(["sample", "--model", str(tiny_run), "--conditions", str(tiny_root / "test.json"), "--out",
                        str(a_file / "inside"), "--steps", "2"], NotADirectoryError, str(a_file))


def test_an_unwritable_folder_is_named(tiny_run, tiny_root, tmp_path, fails_with):
    """As an ordinary user, in this process; as root (CI), in a child process that keeps uid 0 but drops every
    capability (``setpriv``), so root's override of folder permissions is gone and the check meets a real refusal."""
    import os
    import shutil
    import subprocess
    import sys

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    argv = ["sample", "--model", str(tiny_run), "--conditions", str(tiny_root / "test.json"), "--out",
            str(locked / "o"), "--steps", "2"]
    message = f"cannot write images into {locked / 'o'}: {locked} is not writable"
    if os.geteuid() != 0:
        fails_with(argv, PermissionError, message)
        return
    setpriv = shutil.which("setpriv")
    assert setpriv, "as root this check needs setpriv (util-linux) to drop root's capabilities"
    child = subprocess.run([setpriv, "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "lab6.cli",
                            *argv, "--debug"], capture_output=True, text=True, timeout=300)
    assert child.returncode == 1 and child.stderr.strip().splitlines()[-1] == f"PermissionError: {message}", \
        child.stderr
    assert not (locked / "o").exists()


def test_data_roots_with_missing_or_corrupt_files(tiny_root, tmp_path, fails_with):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    fails_with(["train", "--data-root", str(tmp_path / "missing"), "--preset", "tiny", "--steps", "1", "--out",
                        str(tmp_path / "run")], FileNotFoundError, "missing does not exist: point --data-root")
    (tmp_path / "empty").mkdir()
    fails_with(["train", "--data-root", str(tmp_path / "empty"), "--preset", "tiny", "--steps", "1", "--out",
                        str(tmp_path / "run")], FileNotFoundError, "holds neither train.json nor test.json")
    first = sorted((root / "iclevr").iterdir())[0]
    first.write_bytes(b"not a png")
    fails_with(["train", "--data-root", str(root), "--preset", "tiny", "--steps", "1", "--out",
                        str(tmp_path / "run")], OSError, "could not be read", first.name)
    first.unlink()
    fails_with(["train", "--data-root", str(root), "--preset", "tiny", "--steps", "1", "--out",
                        str(tmp_path / "run")], FileNotFoundError, "missing from", first.name)


def test_objects_json_that_disagrees_with_the_label_order(tiny_root, tmp_path, fails_with):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(tiny_root, root)
    mapping = json.loads((root / "objects.json").read_text())
    mapping["gray cube"], mapping["red cube"] = 1, 0
    (root / "objects.json").write_text(json.dumps(mapping))
    fails_with(["train", "--data-root", str(root), "--preset", "tiny", "--steps", "1", "--out",
                        str(tmp_path / "run")], ConditionError, "gives 'gray cube' the index 1", "use 0")


def test_a_word_given_to_a_number_field_is_named(tiny_root, tmp_path, fails_with):
    """``--set eval_every=None`` (Python's spelling) once reached the training loop and failed there."""
    fails_with(["train", "--data-root", str(tiny_root), "--preset", "tiny", "--steps", "1", "--out",
                        str(tmp_path / "run"), "--set", "eval_every=None"],
               ValueError,
               "--set eval_every=None: eval_every takes a whole number (or null for none, as in JSON), got 'None'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("device, message", [
    ("banana", "unknown device 'banana': use cpu, cuda, cuda:N or mps"),
    ("cuda:99", "cuda:99: "),  # no GPU here: "torch sees no CUDA GPU"; with fewer than 100: "this machine has"
])
def test_a_device_this_machine_lacks_is_named_before_any_model_is_loaded(tiny_root, tmp_path, capsys, device, message):
    """``--device cuda`` on a machine without a GPU fails in one line naming the device, not in torch's
    RuntimeError from inside the loading."""
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--conditions", str(tiny_root / "test.json"), "--out", str(tmp_path / "o"),
              "--device", device])
    assert exit_info.value.code == 2
    printed = capsys.readouterr().err
    assert "Traceback" not in printed and f"lab6 sample: error: argument --device: {message}" in printed, printed
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("item, message", [
    ("checkpoint_steps=ten", "checkpoint_steps takes a whole number (or null for none, as in JSON), got 'ten'"),
    ("steps=2.5", "steps takes a whole number"),
    ("lr=fast", "lr takes a number, got 'fast'"),
    ("lr=null", "lr cannot be null"),
    ("augment=yes", "augment takes true or false, got 'yes'"),
    ("block_out_channels=64", "block_out_channels takes a JSON list"),
    ("learning_rate=1e-3", "with one of the fields image_size,"),
    ("lr", "write FIELD=VALUE"),
])
def test_set_names_the_field_and_what_it_takes(item, message):
    """Every ``--set`` mistake is refused before a run starts, by the field's declared type."""
    from lab6.config import TrainConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig.parse_override(item)


@pytest.mark.parametrize("item, message", [
    ("batch_size=0", "batch_size must be an integer >= 1, got 0"),
    ("cond_dropout=1.5",
     "cond_dropout must be in [0, 1) (0: no null condition, so no classifier-free guidance), got 1.5"),
    ("ema_decay=2", "ema_decay must be in [0, 1), got 2"),
    ("min_lr_ratio=-2", "min_lr_ratio must be in [0, 1] (1: a constant learning rate), got -2"),
    ("lr=-1", "lr must be > 0, got -1"),
    ("eval_every=0", "eval_every must be null (only at the end) or an integer >= 1, got 0"),
    ("block_out_channels=[]", "block_out_channels must be one or more positive widths, got ()"),
    ("guidance_scale=-1", "guidance_scale must be >= 0 (0: unconditional, 1: conditional, > 1: guided), got -1"),
])
def test_a_value_out_of_its_range_is_refused_before_any_data_is_read(fails_with, tmp_path, item, message):
    """A value of the right type but outside its field's range fails at once (no data root is given: the
    built-in data set would be rendered first if the check came later), naming the field, the value and the range,
    rather than a batch of 0 ending in ZeroDivisionError or an EMA decay of 2 training a diverging model silently."""
    fails_with(["train", "--preset", "tiny", "--set", item, "--steps", "1", "--out", str(tmp_path / "run")],
               ValueError, message)
    assert not (tmp_path / "run").exists()


def test_set_reads_json_and_plain_words():
    from lab6.config import TrainConfig

    read = dict(TrainConfig.parse_override(item) for item in
                ["lr=1e-3", "steps=null", "prediction=v", "block_out_channels=[16, 32]", "augment=false",
                 "init_from=123", "epochs=2"])
    assert read == {"lr": 1e-3, "steps": None, "prediction": "v", "block_out_channels": (16, 32), "augment": False,
                    "init_from": "123", "epochs": 2}


def test_debug_shows_the_traceback(tmp_path, tiny_root):
    with pytest.raises(FileNotFoundError):
        main(["sample", "--model", str(tmp_path / "nothing"), "--conditions", str(tiny_root / "test.json"),
              "--out", str(tmp_path / "o"), "--debug"])
