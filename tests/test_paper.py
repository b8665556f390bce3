"""`jaxseg.paper`: every row trained in turn, finished rows skipped, the table written, and
starting weights checked before the first run."""

import pytest

from jaxseg import paper
from jaxseg.errors import JaxsegError

TINY = [
    "data.height=32",
    "data.width=64",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.workers=0",
    "model.options={'widths': (4, 4, 4, 4, 4)}",
    "train.epochs=1",
]


@pytest.mark.slow
def test_paper_trains_rows_skips_finished_ones_and_writes_the_table(
    synthetic_data, tmp_path, capsys
):
    data = str(synthetic_data(8, 4, 1, 32, 64, 2))
    names = ("baseline", "flip")
    table = paper.run_paper(tmp_path, data=data, names=names, overrides=TINY)
    rows = [line.split("|")[1:3] for line in table.read_text().splitlines()[2:6]]
    rows = [[cell.strip() for cell in row] for row in rows]
    # Each run's source is its data; the study's published row follows it.
    assert rows == [
        ["baseline", "data"],
        ["baseline", "study (Table 1)"],
        ["flip", "data"],
        ["flip", "study (Table 1)"],
    ]
    assert "All classes:" in table.read_text()
    capsys.readouterr()
    paper.run_paper(tmp_path, data=data, names=names, overrides=TINY)
    assert capsys.readouterr().out.count("finished earlier, skipped") == 2


def test_missing_starting_weights_fail_before_any_run(tmp_path):
    with pytest.raises(JaxsegError, match="holds no converted weights"):
        paper.run_paper(
            tmp_path,
            data=str(tmp_path),
            names=("baseline", "transfer"),
            overrides=[f"model.init_from={tmp_path / 'none'}"],
        )
    assert not (tmp_path / "baseline").exists()
