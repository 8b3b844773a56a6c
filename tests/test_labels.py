import json
import warnings

import numpy as np
import pytest

from lab6.labels import (
    LABELS,
    ConditionError,
    check_objects,
    decode,
    encode,
    encode_many,
    label_index,
    load_conditions,
)


def test_official_order():
    assert len(LABELS) == 24
    assert LABELS[0] == "gray cube" and LABELS[1] == "red cube" and LABELS[23] == "yellow cylinder"
    assert label_index("cyan sphere") == 8 * 1 + 6


def test_matches_course_objects_json(reference_root):
    check_objects(reference_root / "objects.json")  # raises if the order differs


def test_encode_decode_round_trip():
    vector = encode(["red sphere", "cyan cylinder", "cyan cube"])
    assert vector.dtype == np.float32 and vector.shape == (24,)
    assert sorted(np.flatnonzero(vector).tolist()) == [6, 9, 22]
    assert decode(vector) == ["cyan cube", "red sphere", "cyan cylinder"]
    assert encode_many([["gray cube"], ["red cube"]]).shape == (2, 24)


def test_unknown_name_suggests_closest():
    with pytest.raises(ConditionError, match=r"unknown label 'red cubes'.*'red cube'"):
        encode(["red cubes"])
    with pytest.raises(ConditionError, match="unknown label 'pink cube'"):
        encode(["pink cube"])


def test_repeated_empty_and_too_many():
    with pytest.raises(ConditionError, match="'red cube' appears twice"):
        encode(["red cube", "red cube"])
    with pytest.raises(ConditionError, match="empty condition"):
        encode([])
    with pytest.raises(ConditionError, match="6 objects"):
        encode(LABELS[:6])
    with pytest.raises(ConditionError, match="must be a list"):
        encode("red cube")


def test_four_objects_warn_but_encode():
    with pytest.warns(UserWarning, match="at most 3"):
        vector = encode(list(LABELS[:4]))
    assert vector.sum() == 4


def test_three_objects_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode(list(LABELS[:3]))


@pytest.mark.parametrize("content", ['{"a": 1}', '[["red cube"], "blue cube"]', '[[1, 2]]', "not json"])
def test_bad_conditions_files(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConditionError, match="bad.json"):
        load_conditions(path)


def test_bad_name_in_file_names_its_position(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([["red cube"], ["red cube", "bleu sphere"]]))
    with pytest.raises(ConditionError, match=r"condition 1: unknown label 'bleu sphere'.*'blue sphere'"):
        load_conditions(path)


def test_course_conditions_files_load(reference_root):
    for name, counts in (("test.json", {1: 6, 2: 12, 3: 14}), ("new_test.json", {2: 12, 3: 20})):
        conditions = load_conditions(reference_root / name)
        assert len(conditions) == 32
        assert {k: sum(len(c) == k for c in conditions) for k in counts} == counts


def test_shipped_heldout_set_is_the_seeded_one():
    from lab6.data_root import HELDOUT_FILE
    from lab6.labels import heldout_conditions

    shipped = load_conditions(HELDOUT_FILE)
    assert shipped == heldout_conditions() and len(shipped) == 128
    assert {len(c) for c in shipped} == {1, 2, 3}
