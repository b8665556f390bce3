"""The benchmark CLIs at tiny sizes: well-formed tables, ratio last, parity at their weights.

Speed is never asserted: these runs only prove that the benchmarks measure what they say.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import common, loader, processes

pytest.importorskip("torchvision")
bench_all = pytest.importorskip("benchmarks.all")
inference = pytest.importorskip("benchmarks.inference")
train_step = pytest.importorskip("benchmarks.train_step")

TINY = ["--height=32", "--width=64", "--batch=2", "--min-steps=1", "--max-steps=2", "--budget=0"]
TINY_MODELS = {
    "fcn": ["--model=fcn", "--option=widths=[4,8,8,8,16]"],
    "custom": ["--model=custom", "--option=depth=2"],
    "unet": ["--model=unet", "--option=base_width=4"],
}
FRAMEWORK_ROWS = (common.JAX_ROW, common.TORCH_EAGER_ROW)
RATIO = re.compile(
    r"^ratio jaxseg jit / torch eager time: \d+\.\d\d median, \d+\.\d\d fastest"
    r"( \(target <= [\d.]+\))?$"
)


def _table(lines: list[str]) -> list[list[str]]:
    """The cells of the markdown table's body rows."""
    rows = [line for line in lines if line.startswith("| ")]
    header, *body = ([c.strip() for c in row.strip("|").split("|")] for row in rows)
    assert tuple(header) == common.TABLE_HEADERS
    return body


def _check_printed(capsys) -> list[list[str]]:
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("machine: ") and lines[1].startswith("versions: python")
    header = next(i for i, line in enumerate(lines) if line.startswith("| framework"))
    assert re.match(r"^\|-+(\|-+)+\|$", lines[header + 1])
    assert RATIO.match(lines[-1]), lines[-1]
    body = _table(lines)
    assert [row[0] for row in body] == [common.JAX_ROW, common.TORCH_EAGER_ROW]
    for row in body:
        assert float(row[1]) > 0 and re.match(r"^[\d.e-]+-[\d.e-]+$", row[2])
    return body


@pytest.mark.parametrize("model", ["fcn", "custom"])
def test_train_step_table_and_equal_first_loss(model, capsys):
    result = train_step.main([*TINY_MODELS[model], *TINY])
    body = _check_printed(capsys)
    # Same weights, same batch, no dropout: the first step's losses agree.
    jax_loss, torch_loss = (float(row[6]) for row in body)
    assert jax_loss == pytest.approx(torch_loss, rel=1e-4)
    assert result.flops and result.flops > 0


def test_train_step_bf16_compares_with_torch_autocast(capsys):
    result = train_step.main([*TINY_MODELS["fcn"], *TINY, "--dtype=bf16"])
    _check_printed(capsys)
    assert "bf16" in result.title and "AMP bf16" in result.title
    jax_loss, torch_loss = (row.loss for row in result.rows)
    assert np.isfinite(jax_loss) and jax_loss == pytest.approx(torch_loss, rel=0.05)


@pytest.mark.parametrize("model", list(TINY_MODELS))
def test_inference_table_and_parity_at_benchmark_weights(model, capsys):
    result = inference.main([*TINY_MODELS[model], *TINY])
    _check_printed(capsys)
    jax_row = next(r for r in result.rows if r.framework == common.JAX_ROW)
    assert jax_row.max_abs_diff <= 1e-4


def test_deeplabv3_pair_parity(capsys):
    """torchvision's DeepLabV3 converted as the benchmark does, at an odd size."""
    result = inference.main(
        ["--model=deeplabv3_resnet50", "--height=33", "--width=47", "--batch=1", *TINY[3:]]
    )
    _check_printed(capsys)
    jax_row = next(r for r in result.rows if r.framework == common.JAX_ROW)
    assert jax_row.max_abs_diff <= 1e-4


def test_results_file_is_appended(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    out.write_text("# earlier\n")
    train_step.main([*TINY_MODELS["fcn"], *TINY, f"--results={out}"])
    printed = capsys.readouterr().out
    assert out.read_text() == "# earlier\n" + printed + "\n"


def _fake_result(seconds: float, flops: float = 2e9) -> common.Result:
    rows = [
        common.Row(common.JAX_ROW, common.Timing([seconds, 2 * seconds]), 10.0, 1.5, loss=3.3),
        common.Row(common.TORCH_EAGER_ROW, common.Timing([2 * seconds]), 20.0, None, loss=3.3),
    ]
    return common.Result("train step: fake", 2, "fp32", flops, rows, target=0.8)


def test_all_skips_rows_over_budget_and_writes_tables():
    rows = [
        bench_all.Planned("train", "fcn", 256, 512, 2, "fp32"),
        bench_all.Planned("train", "fcn", 512, 1024, 2, "fp32"),
        bench_all.Planned("inference", "fcn", 512, 1024, 2, "fp32"),
    ]

    now = [0.0]

    def slow_run(args):
        now[0] += 1.0  # Each row takes one second on the fake clock.
        return _fake_result(0.1)

    # The first row takes 1 s, so the second (4x the pixels) is estimated at 4 s, more than
    # the 2 s left; the third has no estimate and runs in what is left.
    bench_all.run_rows(
        rows,
        budget_s=3.0,
        clock=lambda: now[0],
        row_budget_s=1.0,
        min_steps=1,
        runners={"train": slow_run, "inference": slow_run},
        rounds=2,
        separate_fn=lambda module, flags, rounds: common.Result(
            "separate",
            2,
            "fp32",
            None,
            [common.Row(name, common.Timing([0.2]), None, None) for name in FRAMEWORK_ROWS],
            notes=["round 1", "round 2"],
        ),
    )
    assert rows[0].result is not None and rows[2].result is not None
    assert rows[1].result is None and rows[1].skipped.startswith("not run: estimated")

    text = bench_all.results_markdown(rows, ["loader table"], minutes=0.1, on_gpu=False)
    assert text.startswith("# Benchmarks: jaxseg against PyTorch\n")
    for heading in ("## Train step", "## Inference (eval forward)", "## Input pipeline"):
        assert f"\n{heading}" in text
    assert "No GPU was available" in text
    train_rows = [line for line in text.split("## Inference")[0].splitlines() if "| fcn" in line]
    assert len(train_rows) == 2
    first = [c.strip() for c in train_rows[0].strip("|").split("|")]
    assert first[:4] == ["fcn", "256x512", "2", "fp32"]
    # Medians 0.15 s / 0.2 s (fastest 0.1 / 0.2); the fcn target; 2e9 FLOP / 0.15 s.
    assert first[6] == "0.75 (0.50)" and first[8] == "<= 0.8" and first[12] == "13.3 (n/a)"
    assert first[7] == "1.00 (2 rounds)"  # The fake separate run: 0.2 s / 0.2 s.
    assert "not run: estimated" in train_rows[1]
    # The two full tables that ran, the train row's separate-process one too.
    assert text.count("```") == 6


def test_loader_table(capsys):
    lines = loader.run(loader.parse_args(["--images=8", "--json-files=2", "--repeats=1"]))
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| loader")]
    assert [row.split("|")[1].strip() for row in body] == [
        "one process, no loader",
        "grain mp_prefetch",
        "torch DataLoader",
    ]
    assert re.match(r"^ratio grain / torch images/s: \d+\.\d\d whole run", lines[-1])
    assert np.isfinite(float(lines[-1].split(": ")[1].split()[0]))


def test_only_times_one_framework(capsys):
    result = train_step.main([*TINY_MODELS["fcn"], *TINY, "--only=torch"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [row[0] for row in _table(lines)] == [common.TORCH_EAGER_ROW]
    assert result.flops is None and [r.framework for r in result.rows] == [common.TORCH_EAGER_ROW]
    assert re.match(r"^torch eager alone: [\d.e-]+ s/step median$", lines[-1])


def test_child_argv_drops_the_parents_flags():
    argv = ["--model=fcn", "--processes", "3", "--results=R.md", "--json", "x", "--batch=2"]
    assert processes.child_argv(argv, "jax", "out.json") == [
        "--model=fcn",
        "--batch=2",
        "--only=jax",
        "--json=out.json",
    ]


def test_processes_alternate_frameworks_and_print_the_ratio_last():
    """Fake children write known step times; the medians and ratio are checked by hand."""
    seconds = {"jax": [[1.0, 3.0, 2.0], [4.0, 6.0]], "torch": [[2.0, 2.0], [9.0, 1.0, 3.0]]}
    calls = []

    def fake_child(module, argv):
        only = next(a.split("=")[1] for a in argv if a.startswith("--only="))
        path = next(a.split("=")[1] for a in argv if a.startswith("--json="))
        calls.append((module, only))
        name = common.JAX_ROW if only == "jax" else common.TORCH_EAGER_ROW
        times = seconds[only][sum(c[1] == only for c in calls) - 1]
        row = common.Row(name, common.Timing(times), 1.0, None, loss=3.0)
        flops = 1e9 if only == "jax" else None
        result = common.Result("train step: fake; 1 warm-up", 2, "fp32", flops, [row], 0.8)
        Path(path).write_text(json.dumps(common.result_to_json(result)))

    argv = ["--model=fcn", "--processes=2", "--results=x.md"]
    result = processes.run_separate("benchmarks.train_step", argv, 2, run_fn=fake_child)
    assert calls == [("benchmarks.train_step", f) for f in ("jax", "torch")] * 2
    # Per-process medians: jax 2.0 and 5.0, torch 2.0 and 3.0.
    assert [r.timing.seconds for r in result.rows] == [[2.0, 5.0], [2.0, 3.0]]
    lines = common.result_lines(result)
    assert lines[-3:] == [
        "round 1: jaxseg jit 2 s, torch eager 2 s",
        "round 2: jaxseg jit 5 s, torch eager 3 s",
        # Medians 3.5 / 2.5; fastest 2.0 / 2.0.
        "ratio jaxseg jit / torch eager time, separate processes: 1.40 median, 1.00 fastest "
        "(target <= 0.8)",
    ]
    assert result.flops == 1e9 and "alone in its own process, 2 rounds" in result.title


def test_a_failing_child_stops_with_its_error():
    with pytest.raises(SystemExit, match=r"json\.tool .*failed \(exit \d+\): .*No such file"):
        processes.run_child("json.tool", ["/nonexistent.json"])


def test_processes_and_only_together_are_refused(capsys):
    with pytest.raises(SystemExit):
        train_step.main([*TINY_MODELS["fcn"], "--processes=2", "--only=jax"])
    assert "drop --only" in capsys.readouterr().err
