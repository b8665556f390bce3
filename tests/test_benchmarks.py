"""The benchmark CLIs at tiny sizes: well-formed tables, ratio last, parity at their weights.

Speed is never asserted: these runs only prove that the benchmarks measure what they say.
"""

import re
import time

import numpy as np
import pytest

from benchmarks import common, loader

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

    def slow_run(args):
        time.sleep(0.5)
        return _fake_result(0.1)

    # The first row takes 0.5 s, so the second (4x the pixels) is estimated at 2 s.
    bench_all.run_rows(
        rows,
        budget_s=1.5,
        row_budget_s=1.0,
        min_steps=1,
        runners={"train": slow_run, "inference": slow_run},
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
    assert first[6] == "0.75 (0.50)" and first[7] == "<= 0.8" and first[11] == "13.3 (n/a)"
    assert "not run: estimated" in train_rows[1]
    assert text.count("```") == 4  # The two full tables that ran.


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
