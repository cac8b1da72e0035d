"""Every number of the paper's result tables, parsed from its text, against ``maml_probe.paper``.

The text (``../shared/paper/decoupling-adaptation-meta-optimizers.txt``, extracted from the
PDF; its tables are intact) is the independent truth: Tables 1, 2, A1 and A2 (accuracy ± std)
and Table A3 (model and optimizer parameters, seconds per meta-batch, accuracy). The tables are
parsed by their captions and tab-separated rows, so a typo, a swapped column or a missing row in
``paper.py`` fails here, and so does a row there that the paper does not have.
"""
from __future__ import annotations

import re

import pytest

from maml_probe import paper

from .conftest import SHARED_PAPER as PAPER_TEXT

DATASETS = {"synthetic": "synthetic", "omniglot": "omniglot", "cifarfs": "cifarfs",
            "miniimagenet": "miniimagenet"}
CELL = re.compile(r"^([\d.]+)% ± ([\d.]+)$")


def norm(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def dataset_of(cell: str) -> str:
    return DATASETS[re.sub(r"[^a-z]", "", cell.lower())]


def accuracy(cell: str) -> tuple[float, float]:
    m = CELL.match(cell.strip())
    assert m, cell
    return float(m.group(1)), float(m.group(2))


@pytest.fixture(scope="module")
def lines():
    if not PAPER_TEXT.is_file():
        pytest.skip(f"the paper's text is not at {PAPER_TEXT} (a fresh clone has no ../shared)")
    return PAPER_TEXT.read_text(encoding="utf-8").splitlines()


def table_rows(lines, caption: str) -> list[list[str]]:
    """The tab-separated rows after ``caption`` (header included), up to the first line without a tab."""
    start = next(i for i, line in enumerate(lines) if line.startswith(caption))
    rows, i = [], start + 1
    while "\t" not in lines[i]:      # caption continuation, "Meta-Learner Architecture", ...
        i += 1
    while i < len(lines) and "\t" in lines[i]:
        rows.append(lines[i].split("\t"))
        i += 1
    return rows


def parse_accuracy_tables(lines) -> dict[tuple[str, str, str], tuple[float, float]]:
    """``(table, dataset, method) -> (accuracy, std)`` for Tables 1, 2, A1 and A2."""
    out = {}
    header, *rows = table_rows(lines, "Table 1:")
    for row in rows:
        for col, cell in zip(header[1:], row[1:]):
            out[("1", dataset_of(row[0]), norm(col))] = accuracy(cell)
    for table, caption in (("2", "Table 2:"), ("A1", "Table A1:")):
        header, *rows = table_rows(lines, caption)
        for row in rows:
            for col, cell in zip(header[1:], row[1:]):
                method = "CNNPRUNEDTOSCNNSIZE" if norm(col) == "W/PRUNE" else norm("SCNN " + col)
                out[(table, dataset_of(row[0]), method)] = accuracy(cell)
    datasets_row, header, *rows = table_rows(lines, "Table A2:")
    datasets = [dataset_of(d) for d in datasets_row]
    assert datasets == ["omniglot", "cifarfs"] and norm(header[0]) == "NUM.LAYERS"
    for row in rows:
        depth = int(row[0])
        for k, cell in enumerate(row[1:]):
            method = f"CNN{depth}W/MAML" if norm(header[1 + k]) == "CNN" else f"CNN{depth}W/KFC"
            assert norm(header[1 + k]) in ("CNN", "CNNW/KFC")
            out[("A2", datasets[k // 2], method)] = accuracy(cell)
    return out


def count(cell: str) -> int:
    cell = cell.strip()
    if cell.endswith("M"):
        return round(float(cell[:-1]) * 1_000_000)
    return int(cell.replace(",", ""))


def parse_table_a3(lines) -> dict[tuple[str, str], tuple[int, int, float, float]]:
    """``(dataset, method) -> (model params, optimizer params, seconds, accuracy)``."""
    header, *rows = table_rows(lines, "Table A3:")
    assert [norm(h) for h in header] == ["TASK", "METHOD", "MODELPARAMETERS", "OPTIMIZERPARAMETERS",
                                        "TIME", "ACCURACY"]
    out, dataset, model = {}, None, None
    for task, method, model_params, opt_params, seconds, acc in rows:
        dataset = dataset_of(task) if task.strip() else dataset
        name = norm(method)
        if not name.startswith("W/"):                 # "CNN W/ MAML" names the model
            model, name = name.split("W/")[0], "W/" + name.split("W/")[1]
        assert seconds.endswith("s") and acc.endswith("%")
        out[(dataset, model + name)] = (count(model_params), count(opt_params),
                                        float(seconds[:-1]), float(acc[:-1]))
    return out


def test_the_parser_reads_whole_tables(lines):
    """The parser itself: the row and column counts of each table as printed in the paper."""
    acc = parse_accuracy_tables(lines)
    per_table = {t: sum(1 for k in acc if k[0] == t) for t in ("1", "2", "A1", "A2")}
    assert per_table == {"1": 2 * 4, "2": 3 * 5, "A1": 3 * 5, "A2": 2 * 8}
    assert acc[("2", "miniimagenet", "SCNNUPPERBOUND")] == (58.45, 5.58)      # spot checks,
    assert acc[("A2", "cifarfs", "CNN3W/KFC")] == (53.07, 0.58)              # read by eye
    a3 = parse_table_a3(lines)
    assert len(a3) == 18 and a3[("miniimagenet", "CNNW/KFC")] == (36_906, 2_630_000, 1.75, 30.81)


def test_every_accuracy_of_tables_1_2_a1_a2_matches_the_paper(lines):
    """Catches: a mistyped number or std, swapped columns (methods) or rows (datasets), a
    missing or an extra row in ``paper.accuracy_tables()``."""
    expected = parse_accuracy_tables(lines)
    ours = {(r.table, r.dataset, norm(r.method)): (r.paper_accuracy, r.paper_std)
            for r in paper.accuracy_tables().itertuples()}
    assert len(ours) == len(paper.accuracy_tables()), "duplicate rows"
    assert set(ours) == set(expected), (sorted(set(ours) ^ set(expected)))
    wrong = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
    assert not wrong, wrong


def test_every_number_of_table_a3_matches_the_paper(lines):
    """Catches: a mistyped count, time or accuracy, rows shifted between datasets, the
    "2.63M" / "2.60M" counts written out differently, a missing or an extra row."""
    expected = parse_table_a3(lines)
    table = paper.compute_table()
    ours = {(r.dataset, norm(r.method)): (r.paper_model_params, r.paper_optimizer_params,
                                          r.paper_seconds, r.paper_accuracy)
            for r in table.itertuples()}
    assert len(ours) == len(table), "duplicate rows"
    assert set(ours) == set(expected), sorted(set(ours) ^ set(expected))
    wrong = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
    assert not wrong, wrong


def test_table_a3_accuracies_are_the_ones_of_the_accuracy_tables(lines):
    """The paper's own cross-references: Table A3's accuracies repeat Tables A1/A2 (4-layer CNN =
    Table A2 depth 4; SCNN = Table A1) — except mini-ImageNet's CNN rows, which no other table has."""
    acc = parse_accuracy_tables(lines)
    for (dataset, method), (_, _, _, a) in parse_table_a3(lines).items():
        if method.startswith("SCNN"):
            assert acc[("A1", dataset, method)][0] == a, (dataset, method)
        elif dataset != "miniimagenet":
            assert acc[("A2", dataset, method.replace("CNN", "CNN4", 1))][0] == a, (dataset, method)
