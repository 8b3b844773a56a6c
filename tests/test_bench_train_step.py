"""bench.bench_train_step: its rows start from the same weights, take turns and are tabled against the eager step."""

import argparse

import torch

from bench import bench_train_step as bench
from lab6.presets import preset


def test_rows_start_from_the_same_weights_and_differ_only_in_how_they_step():
    cfg = preset("tiny")
    model = cfg.build_model()
    eager, fused = (bench.Stepper(name, cfg, model, 4, bench.VARIANTS[name]) for name in ("eager", "AdamW fused"))
    assert all(torch.equal(a, b) for a, b in zip(eager.model.parameters(), fused.model.parameters()))
    for stepper in (eager, fused):
        stepper.step()
    # the same loss and the same update, to AdamW's rounding: only the way it is computed differs
    for a, b in zip(eager.model.parameters(), fused.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert not all(torch.equal(a, b) for a, b in zip(eager.model.parameters(), model.parameters()))


def test_a_run_gives_one_row_per_variant_with_its_rounds_and_the_table_compares_to_eager():
    args = argparse.Namespace(preset="tiny", batch=4, rounds=2, seconds=0.05, variants=["AdamW foreach", "eager"])
    rows = bench.run(args)
    assert [row["row"] for row in rows] == ["AdamW foreach", "eager"]
    assert all(0 < row["low"] <= row["img_per_s"] <= row["high"] for row in rows)
    table = bench.tables(rows, args)["table"]
    eager_line = next(line for line in table.lines if line.startswith("| eager |"))
    assert "| 1.00x |" in eager_line and "2 rounds of 0.05 s" in table.caption


def test_the_bf16_row_trains_under_cpu_autocast_and_stays_near_the_eager_update():
    cfg = preset("tiny")
    model = cfg.build_model()
    eager, bf16 = (bench.Stepper(name, cfg, model, 4, bench.VARIANTS[name]) for name in ("eager", "bf16 autocast"))
    seen = []
    bf16.forward.register_forward_hook(lambda module, args, out: seen.append(torch.get_autocast_dtype("cpu")
                                                                            if torch.is_autocast_enabled("cpu")
                                                                            else None))
    for stepper in (eager, bf16):
        stepper.step()
    assert seen == [torch.bfloat16]
    for a, b in zip(eager.model.parameters(), bf16.model.parameters()):  # weights stay fp32, the update close
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=2e-3, rtol=0)
