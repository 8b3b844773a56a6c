import os

import pytest
import torch

from lab6.evaluator import (
    Evaluator,
    EvaluatorLoadError,
    build_classifier,
    build_resnet18,
    found_by_shape,
    save_evaluator,
    topk_accuracy,
    topk_found,
    topk_hits,
)
from lab6.evaluator_files import shipped_evaluator_paths
from lab6.scoring import default_evaluator_paths, load_evaluators


def official_compute_acc(out, onehot_labels):
    """The course's evaluator.py scoring loop, verbatim in logic: the reference for ours."""
    acc, total = 0, 0
    for i in range(out.size(0)):
        k = int(onehot_labels[i].sum().item())
        total += k
        _, outi = out[i].topk(k)
        _, li = onehot_labels[i].topk(k)
        for j in outi:
            if j in li:
                acc += 1
    return acc / total


def test_hand_computed_cases():
    labels = torch.zeros(3, 24)
    labels[0, [1]] = 1  # one object: red cube
    labels[1, [2, 9]] = 1  # two objects
    labels[2, [0, 5, 23]] = 1  # three objects
    out = torch.full((3, 24), 0.01)
    out[0, 1] = 0.9  # hit
    out[1, 2], out[1, 3] = 0.9, 0.8  # top-2 = {2, 3}: one hit of two
    out[2, [0, 5, 7]] = torch.tensor([0.9, 0.8, 0.95])  # top-3 = {7, 0, 5}: two hits of three
    assert topk_hits(out, labels).tolist() == [1, 1, 2]
    assert topk_accuracy(out, labels) == pytest.approx(4 / 6)  # micro average over all 6 labels


def test_found_by_shape_shows_an_evaluator_blind_to_one_shape():
    """The hand-computed cases per shape: of the cubes (labels 0-7) 1, 2, 0 found of 1, 1, 2; the sphere
    (label 9) missed; the cylinder (23) missed. A shape no image holds has no share."""
    labels = torch.zeros(3, 24)
    labels[0, [1]] = 1
    labels[1, [2, 9]] = 1
    labels[2, [0, 5, 23]] = 1
    out = torch.full((3, 24), 0.01)
    out[0, 1] = 0.9
    out[1, 2], out[1, 3] = 0.9, 0.8
    out[2, [0, 5, 7]] = torch.tensor([0.9, 0.8, 0.95])
    assert topk_found(out, labels).nonzero().tolist() == [[0, 1], [1, 2], [2, 0], [2, 5]]
    assert found_by_shape(out, labels) == {"cube": 1.0, "sphere": 0.0, "cylinder": 0.0}
    assert found_by_shape(out[:1], labels[:1]) == {"cube": 1.0}
    blind_to_cubes = labels.roll(16, dims=1) + 0.5 * labels  # each cube read as the cylinder of its colour
    assert found_by_shape(blind_to_cubes, labels)["cube"] == 0.0


def test_agrees_with_the_official_loop():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        labels = torch.zeros(16, 24)
        for row in labels:
            row[torch.randperm(24, generator=g)[: int(torch.randint(1, 4, (1,), generator=g))]] = 1
        out = torch.rand(16, 24, generator=g)
        assert topk_accuracy(out, labels) == pytest.approx(official_compute_acc(out, labels))


def test_empty_labels_are_an_error():
    with pytest.raises(ValueError, match="no true labels"):
        topk_accuracy(torch.rand(2, 24), torch.zeros(2, 24))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_and_load_formats(tmp_path, suffix):
    torch.manual_seed(0)
    model = build_resnet18().eval()
    path = tmp_path / f"evaluator{suffix}"
    save_evaluator(model, path)
    if suffix == ".pth":  # the official format: {'model': state_dict}
        assert set(torch.load(path, weights_only=True)) == {"model"}
    loaded = Evaluator.load(path)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = model(images)
    atol = 0 if suffix == ".pth" else 2e-2  # the .safetensors export is fp16
    assert torch.allclose(loaded.probabilities(images), expected, atol=atol)
    assert loaded.probabilities(torch.rand(2, 3, 32, 32)).shape == (2, 24)  # resized to 64x64


class _RunsCode:
    """Unpickled, it creates the file ``marker``: a stand-in for any code a checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mknod, (self.marker,))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, zip_format, tiny_root, capsys):
    """Both torch.save formats, through ``Evaluator.load`` and ``lab6 evaluate --evaluator``: refused by name, and
    the marker the payload would create is absent. A plain ``torch.load`` creates it: the payload is live."""
    from lab6.cli import main
    from lab6.images import save_images

    marker = tmp_path / "ran"
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": _RunsCode(marker)}, path, _use_new_zipfile_serialization=zip_format)
    torch.load(path, weights_only=False)
    assert marker.exists(), "the payload did not run even when allowed to: the test would prove nothing"
    marker.unlink()

    with pytest.raises(EvaluatorLoadError, match="refused to load"):
        Evaluator.load(path)
    assert not marker.exists()

    save_images(torch.zeros(6, 3, 16, 16), tmp_path / "images")
    status = main(["evaluate", "--images", str(tmp_path / "images"), "--conditions", str(tiny_root / "test.json"),
                   "--evaluator", str(path)])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert err.startswith(f"lab6 evaluate: error: refused to load {path}: it holds pickled objects"), err
    assert not marker.exists()


def test_wrong_weights_are_named(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": {"fc.weight": torch.zeros(3)}}, path)
    with pytest.raises(EvaluatorLoadError, match="does not hold resnet18"):
        Evaluator.load(path)
    with pytest.raises(EvaluatorLoadError, match="not found"):
        Evaluator.load(tmp_path / "missing.pth")


def test_score_reports_per_image_hits():
    torch.manual_seed(0)
    evaluator = Evaluator(build_resnet18())
    score = evaluator.score(torch.rand(3, 3, 64, 64) * 2 - 1, [["red cube"], ["gray cube", "red sphere"],
                                                               ["gray cube", "red sphere", "cyan cube"]])
    assert score.labels_per_image == [1, 2, 3] and len(score.hits) == 3
    assert score.accuracy == pytest.approx(sum(score.hits) / 6)


def test_safetensors_load_accepts_an_indexed_cpu_device(tmp_path):
    path = tmp_path / "evaluator.safetensors"
    save_evaluator(build_resnet18(), path)
    assert Evaluator.load(path, device="cpu:0").device.type == "cpu"  # accelerate's device name in a process group


def test_another_architecture_is_recorded_and_reloaded(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("mobilenet_v3_small").eval()
    path = tmp_path / "proxy.safetensors"
    save_evaluator(model, path, arch="mobilenet_v3_small")
    loaded = Evaluator.load(path)
    assert loaded.arch == loaded.name == "mobilenet_v3_small"
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = model(images)
    assert torch.allclose(loaded.probabilities(images), expected, atol=2e-2)  # fp16 on disk
    assert loaded.features(images).shape == (2, 1024)  # the input of the last linear layer


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture 'resnet7'.*torchvision classification model"):
        build_classifier("resnet7")


def test_the_official_format_is_for_resnet18_only(tmp_path):
    message = "official .pth format holds a ResNet18; save a efficientnet_b0 as .safetensors"
    with pytest.raises(ValueError, match=message):
        save_evaluator(build_classifier("efficientnet_b0"), tmp_path / "e.pth", arch="efficientnet_b0")


def test_wrong_architecture_names_what_is_missing(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": build_classifier("efficientnet_b0").state_dict()}, path)
    with pytest.raises(EvaluatorLoadError, match=r"does not hold resnet18.*expected tensors missing"):
        Evaluator.load(path)


def test_not_a_checkpoint_is_named(tmp_path):
    path = tmp_path / "checkpoint.pth"
    path.write_text("this is a text file")
    with pytest.raises(EvaluatorLoadError, match="could not read .* as a torch checkpoint"):
        Evaluator.load(path)
    truncated = tmp_path / "proxy.safetensors"
    save_evaluator(build_resnet18(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(EvaluatorLoadError, match="could not read .* as safetensors"):
        Evaluator.load(truncated)


def test_the_official_checkpoint_replaces_only_the_resnet18_proxy(tmp_path, evaluator_file, monkeypatch):
    from lab6 import evaluator_files

    shipped = tmp_path / "assets"
    shipped.mkdir()
    monkeypatch.setattr(evaluator_files, "SHIPPED_DIR", shipped)
    save_evaluator(build_resnet18(), shipped / "proxy_resnet18.safetensors")
    save_evaluator(build_classifier("mobilenet_v3_small"), shipped / "proxy_mobilenet_v3_small.safetensors",
                   arch="mobilenet_v3_small")
    assert [p.name for p in shipped_evaluator_paths()] == ["proxy_resnet18.safetensors",
                                                           "proxy_mobilenet_v3_small.safetensors"]
    assert default_evaluator_paths(None) == shipped_evaluator_paths()
    root = tmp_path / "root"
    root.mkdir()
    (root / "checkpoint.pth").write_bytes(evaluator_file.read_bytes())
    assert default_evaluator_paths(root) == [root / "checkpoint.pth", shipped / "proxy_mobilenet_v3_small.safetensors"]
    assert [e.name for e in load_evaluators(None, root)] == ["official", "mobilenet_v3_small"]


def test_no_evaluator_is_an_empty_list_when_not_required(tmp_path):
    messages = []
    assert load_evaluators([tmp_path / "missing.pth"], required=False, log=messages.append) == []
    assert "not found" in messages[0]
    with pytest.raises(EvaluatorLoadError, match="not found"):
        load_evaluators([tmp_path / "missing.pth"])
