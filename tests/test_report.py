"""Tables in Table 1's shape, relative gains, DET and gain figures, the det CLI."""

import csv
import io
import json

import numpy as np
import pytest

from jeffreys.cli import main
from jeffreys.errors import InputError
from jeffreys.metrics import evaluate, jsonable
from jeffreys.report import figure_path, plot_det, plot_gains, relative_gains, table_csv, table_markdown

# two rows of the paper's Table 1 (EER as fractions)
RESULTS = {
    "AAM-Softmax": {"VoxCeleb1-O": {"eer": 0.0093, "min_dcf": {0.01: 0.095}}, "DiPCo": {"eer": 0.0585, "min_dcf": {0.01: 0.368}}},
    "AAM-Jeffreys": {"VoxCeleb1-O": {"eer": 0.0086, "min_dcf": {0.01: 0.087}}, "DiPCo": {"eer": 0.0554, "min_dcf": {0.01: 0.336}}},
    "partial": {"DiPCo": {"eer": 0.06, "min_dcf": {0.01: 0.4}}},
}

def test_table_markdown():
    md = table_markdown(RESULTS)
    lines = md.splitlines()
    assert lines[0] == "| System | VoxCeleb1-O EER % | VoxCeleb1-O minDCF | DiPCo EER % | DiPCo minDCF |"
    assert lines[2] == "| AAM-Softmax | 0.93 | 0.095 | 5.85 | 0.368 |"
    assert lines[3] == "| AAM-Jeffreys | **0.86** | **0.087** | **5.54** | **0.336** |"
    assert lines[4] == "| partial | – | – | 6.00 | 0.400 |"
    assert "p_target = 0.01" in md

def test_table_csv_and_json_keys():
    # a results dict that went through JSON has string p_target keys
    via_json = json.loads(json.dumps(jsonable(RESULTS)))
    rows = list(csv.reader(io.StringIO(table_csv(via_json, evalsets=["DiPCo"]))))
    assert rows[0] == ["system", "DiPCo EER %", "DiPCo EER % lo", "DiPCo EER % hi", "DiPCo minDCF p=0.01",
                       "DiPCo minDCF lo", "DiPCo minDCF hi"]
    assert float(rows[1][1]) == pytest.approx(5.85) and float(rows[2][4]) == pytest.approx(0.336)
    assert rows[1][2:4] == ["", ""]  # no intervals in these cells
    with_ci = {"S": {"X": {"eer": 0.1, "min_dcf": {0.01: 0.5}, "ci": {"eer": [0.08, 0.12], "min_dcf": [0.4, 0.6]}}}}
    row = list(csv.reader(io.StringIO(table_csv(with_ci))))[1]
    assert [float(v) for v in row[1:]] == pytest.approx([10.0, 8.0, 12.0, 0.5, 0.4, 0.6])
    with pytest.raises(InputError, match="no minDCF at p_target=0.05"):
        table_csv(RESULTS, p_target=0.05)

def test_relative_gains_and_figure(tmp_path):
    g = relative_gains(RESULTS, "AAM-Softmax")
    assert g["AAM-Jeffreys"]["VoxCeleb1-O"]["eer"] == pytest.approx((0.93 - 0.86) / 0.93)
    assert g["AAM-Jeffreys"]["DiPCo"]["min_dcf"] == pytest.approx((0.368 - 0.336) / 0.368)
    assert "VoxCeleb1-O" not in g["partial"]
    out = plot_gains(RESULTS, "AAM-Softmax", tmp_path / "gains.png")
    assert out == g and (tmp_path / "gains.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="baseline 'CE'"):
        relative_gains(RESULTS, "CE")

def synthetic(seed, shift):
    rng = np.random.default_rng(seed)
    y = rng.random(5000) < 0.1
    return rng.standard_normal(5000) + shift * y, y

def test_plot_det_png_pdf(tmp_path):
    systems = {"weak": synthetic(0, 1.5), "strong": synthetic(1, 3.0)}
    r = plot_det(systems, tmp_path / "det.png", title="test")
    assert r["strong"]["eer"] < r["weak"]["eer"]
    assert r["weak"]["eer"] == evaluate(*systems["weak"])["eer"]
    assert (tmp_path / "det.png").read_bytes()[:4] == b"\x89PNG"
    plot_det(systems, tmp_path / "det.pdf")
    assert (tmp_path / "det.pdf").read_bytes()[:5] == b"%PDF-"
    # one figure rule for the whole package: another suffix gets .png appended
    plot_det(systems, tmp_path / "det.jpeg")
    assert (tmp_path / "det.jpeg.png").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "det.jpeg").exists()
    assert figure_path(tmp_path / "det_vox1.O") == tmp_path / "det_vox1.O.png"
    assert figure_path(tmp_path / "x.SVG") == tmp_path / "x.SVG"
    # degenerate systems still plot (EER 0 and 0.5)
    plot_det({"sep": ([0, 1], [0, 1]), "tied": ([1, 1], [0, 1])}, tmp_path / "d2.png")

def test_cli_det(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.1
    trials = [(f"e{i}", f"t{i}", bool(v)) for i, v in enumerate(y)]
    (tmp_path / "trials").write_text("".join(f"{e} {t} {'target' if v else 'nontarget'}\n" for e, t, v in trials))
    files = []
    for k, shift in enumerate((1.0, 2.5)):
        s = rng.standard_normal(len(y)) + shift * y
        p = tmp_path / f"sys{k}.scores"
        p.write_text("".join(f"{e} {t} {v:.6f}\n" for (e, t, _), v in zip(trials, s)))
        files.append(str(p))
    out = tmp_path / "det.png"
    assert main(["det", *files, "--trials", str(tmp_path / "trials"), "--labels", "A", "B", "--out", str(out), "--pdf"]) == 0
    text = capsys.readouterr().out
    assert "A: EER" in text and "B: EER" in text
    assert out.read_bytes()[:4] == b"\x89PNG" and (tmp_path / "det.pdf").read_bytes()[:5] == b"%PDF-"
    assert main(["det", *files, "--trials", str(tmp_path / "trials"), "--labels", "A", "--out", str(out)]) == 2
    assert "1 --labels for 2 scores files" in capsys.readouterr().err


def test_table_markdown_prints_bootstrap_intervals():
    from jeffreys.report import table_markdown

    results = {
        "A": {"s": {"eer": 0.05, "min_dcf": {0.01: 0.5},
                    "ci": {"eer": (0.04, 0.061), "min_dcf": {0.01: (0.41, 0.6)}}}},
        "B": {"s": {"eer": 0.07, "min_dcf": {"0.01": 0.4}, "ci": {"eer": [0.05, 0.09], "min_dcf": [0.3, 0.5]}}},
        "C": {"s": {"eer": 0.06, "min_dcf": {0.01: 0.45}}},
    }
    md = table_markdown(results, 0.01)
    assert "| A | **5.00** [4.00, 6.10] | 0.500 [0.410, 0.600] |" in md
    assert "| B | 7.00 [5.00, 9.00] | **0.400** [0.300, 0.500] |" in md
    assert "| C | 6.00 | 0.450 |" in md
