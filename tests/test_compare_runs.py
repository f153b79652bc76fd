"""`jeffreys compare-runs`: two results.json checked against each other within their intervals,
on synthetic results in the format `jeffreys experiment` writes (tests/test_experiment.py checks
it on real runs)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from jeffreys.cli import main
from jeffreys.errors import InputError
from jeffreys.experiment.compare import compare_runs, format_report, z_test

SYSTEMS = {"aam": 0.10, "jeff": 0.08}
SETS = {"ind": 0.0, "ood": 0.05}
HALF = 0.01  # half-width of every synthetic 95 % interval (EER)


def _env(**changes) -> dict:
    env = {"jeffreys": "0.1.0", "python": "3.11.7", "system": "Linux", "machine": "x86_64", "cpu_model": "Some CPU",
           "cpu_flags": ["avx", "avx2", "avx512f", "fma"], "cpus": 2, "torch": "2.13.0+cpu",
           "torch_cpu_capability": "AVX512", "torch_onednn": "3.12.0", "torch_mkl": "2024.2", "torch_threads": 2,
           "numpy": "2.4.6", "env": {"OMP_NUM_THREADS": None, "ATEN_CPU_CAPABILITY": None},
           "loss_kernel": {"mode": "auto", "loaded": True}, "memory_format": None, "seeds": [0, 1, 2]}
    for k, v in changes.items():
        env[k] = v
    return env


def _results(seeds=(0, 1, 2), digests=True) -> dict:
    """results.json as write_results lays it out (the keys compare-runs reads, and a few more)."""
    out = {"systems": {}, "comparisons": {}, "reference": "aam", "environment": _env(),
           "config": {"seeds": list(seeds), "metrics": {"p_target": 0.01, "n_boot": 1000, "ci": 0.95}}}
    for s, base in SYSTEMS.items():
        runs = {str(seed): {"model": f"systems/{s}/seed-{seed}/model.pt", "eval": {}} for seed in seeds}
        cells = {}
        for e, off in SETS.items():
            per = {"eer": [], "min_dcf": [], "cllr": []}
            for seed in seeds:
                v = base + off + 0.001 * seed
                met = {"eer": v, "min_dcf": 2 * v, "cllr": 0.5 + v, "min_cllr": 0.4 + v, "n_target": 100,
                       "n_nontarget": 900, "nontarget_tail": {}}
                if digests:
                    met["scores_sha256"] = hashlib.sha256(f"{s}/{seed}/{e}".encode()).hexdigest()
                runs[str(seed)]["eval"][e] = met
                for m in per:
                    per[m].append(met[m])
            means = {m: sum(v) / len(v) for m, v in per.items()}
            cells[e] = {**means, "per_seed": per, "p_target": 0.01, "n_target": 100, "n_nontarget": 900,
                        "ci": {"level": 0.95, "n_boot": 1000, "n_skipped": 0, "by": "seed+speaker",
                               **{m: [v - HALF * (2 if m == "min_dcf" else 1), v + HALF * (2 if m == "min_dcf" else 1)]
                                  for m, v in means.items()}}}
        out["systems"][s] = {"label": s, "seeds": list(seeds), "runs": runs, "eval": cells}
    return out


def _shift(res: dict, system: str, set_: str, metric: str, by: float) -> dict:
    """The same run with one system's metric on one set moved by ``by`` (mean, interval, seeds, digests)."""
    res = copy.deepcopy(res)
    sysr = res["systems"][system]
    cell = sysr["eval"][set_]
    cell[metric] += by
    cell["ci"][metric] = [x + by for x in cell["ci"][metric]]
    for run in sysr["runs"].values():
        run["eval"][set_][metric] += by
        run["eval"][set_]["scores_sha256"] = hashlib.sha256(b"other" + run["eval"][set_]["scores_sha256"].encode()).hexdigest()
    return res


def _write(path, res) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    return str(path)


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(["compare-runs", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_identical_runs_are_bit_identical_and_consistent(tmp_path, capsys):
    a = _write(tmp_path / "a" / "results.json", _results())
    b = _write(tmp_path / "b" / "results.json", _results())
    code, out, err = _run(capsys, a, tmp_path / "b")  # a file, or the directory holding it
    assert code == 0 and err == ""
    assert "Bit-identical: yes" in out and "Environment: the same" in out and "Config: the same" in out
    assert "Verdict: consistent" in out and "DIFFER" not in out
    rep = compare_runs(a, b)
    assert rep["bit_identical"] is True and rep["consistent"] and rep["exit_status"] == 0
    assert all(r["p"] == 1.0 and r["diff"] == 0 for r in rep["comparisons"])


def test_a_shift_beyond_the_intervals_is_named_and_exits_1(tmp_path, capsys):
    a = _write(tmp_path / "a.json", _results())
    b = _write(tmp_path / "b.json", _shift(_results(), "jeff", "ood", "eer", 0.05))  # 5 points, intervals ±1
    code, out, _ = _run(capsys, a, b)
    assert code == 1
    verdict = [line for line in out.splitlines() if line.startswith("Verdict")][0]
    assert "NOT consistent: 1 of 12" in verdict and "jeff on ood (EER)" in verdict
    row = [line for line in out.splitlines() if "DIFFER" in line]
    assert len(row) == 1 and row[0].split()[:3] == ["jeff", "ood", "EER"] and "+5.000" in row[0]
    assert float(row[0].split()[7]) > 6.9  # z of B - A: positive when B is higher
    assert "Bit-identical: no (3 of 12 common runs differ; jeff/seed-0/ood: eer, scores; jeff/seed-1/ood" in out
    rep = json.loads(_run(capsys, a, b, "--json")[1])
    assert rep["beyond_intervals"] == [{"system": "jeff", "set": "ood", "metric": "eer"}] and rep["exit_status"] == 1


def test_a_shift_within_the_intervals_is_consistent(tmp_path, capsys):
    a = _write(tmp_path / "a.json", _results())
    b = _write(tmp_path / "b.json", _shift(_results(), "aam", "ind", "eer", 0.005))  # half an interval
    code, out, _ = _run(capsys, a, b)
    assert code == 0 and "Verdict: consistent" in out and "Bit-identical: no" in out


def test_holm_family_decides_not_the_raw_p(tmp_path, capsys):
    # z = 2.6 gives a raw p below 0.01; over a family of 12 Holm makes it 12 p > 0.05.
    se = HALF / norm.ppf(0.975)
    shift = 2.6 * math.sqrt(2) * se
    a = _write(tmp_path / "a.json", _results())
    b = _write(tmp_path / "b.json", _shift(_results(), "aam", "ind", "eer", shift))
    code, out, _ = _run(capsys, a, b, "--json")
    rep = json.loads(out)
    assert code == 0 and rep["multiplicity"] == {"method": "holm", "family": 12, "alpha": 0.05}  # 2 systems × 2 sets × 3
    row = next(r for r in rep["comparisons"] if (r["system"], r["set"], r["metric"]) == ("aam", "ind", "eer"))
    assert row["p"] == pytest.approx(2 * norm.sf(2.6)) and row["p"] < 0.01
    assert row["p_adjusted"] == pytest.approx(12 * row["p"]) and row["verdict"] == "within"
    text = _run(capsys, a, b)[1]
    assert "12 comparisons tested" in text and "Holm-adjusted" in text


def test_z_and_p_against_an_independent_computation():
    # Asymmetric intervals: the side facing the other run is the one used.
    a, ci_a, b, ci_b = 0.12, (0.10, 0.15), 0.09, (0.08, 0.095)
    se_a = (a - ci_a[0]) / norm.ppf(0.975)  # a above b: a's lower side, b's upper side
    se_b = (ci_b[1] - b) / norm.ppf(0.975)
    z = (a - b) / math.sqrt(se_a**2 + se_b**2)
    got = z_test(a, ci_a, b, ci_b)
    assert got[0] == pytest.approx(z) and got[1] == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    assert got[2:] == pytest.approx((se_a, se_b))
    # Symmetric in the two runs, and a 90 % interval reads as a larger standard error.
    back = z_test(b, ci_b, a, ci_a)
    assert back[0] == pytest.approx(-z) and back[1] == pytest.approx(got[1])
    z90 = z_test(a, ci_a, b, ci_b, 0.90, 0.90)[0]
    assert z90 == pytest.approx((a - b) / math.sqrt(((a - ci_a[0]) / norm.ppf(0.95)) ** 2 + ((ci_b[1] - b) / norm.ppf(0.95)) ** 2))


def test_environment_config_and_seed_differences_are_named(tmp_path, capsys):
    a = _write(tmp_path / "a.json", _results())
    other = _results()
    other["environment"] = _env(torch="2.12.0+cpu", cpu_flags=["avx", "avx2", "fma"], torch_cpu_capability="AVX2",
                                env={"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": None})
    other["environment"].pop("memory_format")
    other["config"]["metrics"]["n_boot"] = 500
    b = _write(tmp_path / "b.json", other)
    code, out, _ = _run(capsys, a, b)
    assert code == 0
    assert "Environment differs (5 field(s)):" in out
    assert "  torch: 2.13.0+cpu -> 2.12.0+cpu" in out and "  torch_cpu_capability: AVX512 -> AVX2" in out
    assert "  cpu_flags: avx,avx2,avx512f,fma -> avx,avx2,fma" in out
    assert "  env.OMP_NUM_THREADS: null -> 1" in out and "  memory_format: null -> (absent)" in out
    assert "Config differs (1 field(s)):\n  metrics.n_boot: 1000 -> 500" in out
    rep = compare_runs(a, b)
    assert set(rep["environment"]["differences"]) == {"torch", "cpu_flags", "torch_cpu_capability", "env.OMP_NUM_THREADS",
                                                       "memory_format"}
    # Other seeds: said, and not bit-identical.
    c = _write(tmp_path / "c.json", _results(seeds=(0, 1)))
    code, out, _ = _run(capsys, a, c)
    assert "Seeds differ: aam: [0, 1, 2] in A, [0, 1] in B; jeff: [0, 1, 2] in A, [0, 1] in B" in out
    assert "Bit-identical: no (different (system, seed, set) runs: 4 only in A, 0 only in B" in out


def test_only_in_one_run_and_unknown_bit_identity(tmp_path, capsys):
    full = _results()
    old = _results(digests=False)  # a results.json from before the digests
    del old["systems"]["jeff"]
    for run in old["systems"]["aam"]["runs"].values():
        del run["eval"]["ood"]
    del old["systems"]["aam"]["eval"]["ood"]
    del old["environment"]
    a, b = _write(tmp_path / "a.json", full), _write(tmp_path / "b.json", old)
    code, out, _ = _run(capsys, a, b)
    assert code == 0
    assert "Only in A: system jeff; aam on ood" in out and "Environment: not recorded in B" in out
    assert "3 comparisons tested" in out
    # Same runs, digests missing on one side: unknown.
    same = _results(digests=False)
    code, out, _ = _run(capsys, _write(tmp_path / "c.json", full), _write(tmp_path / "d.json", same))
    assert "Bit-identical: unknown (score digests missing for 12 of 12 runs" in out
    # Without intervals (n_boot: 0) nothing is tested, and that is said.
    bare = copy.deepcopy(full)
    for s in bare["systems"].values():
        for cell in s["eval"].values():
            del cell["ci"]
    code, out, _ = _run(capsys, a, _write(tmp_path / "e.json", bare))
    assert code == 0 and "0 comparisons tested" in out and "12 not tested (no interval" in out


@pytest.mark.parametrize("case, message", [
    ("truncated", r"b.json:\d+: not valid JSON"),
    ("empty", r"b.json:1: not valid JSON \(Expecting value"),
    ("not_utf8", r"b.json:1: not UTF-8 text"),
    ("top_list", r"b.json: expected a JSON object \(a results.json\) at the top level, got a list"),
    ("no_systems", r"b.json: key systems missing"),
    ("wrong_type", r'b.json: key systems\["jeff"\].eval\["ind"\].eer: expected a number, got a string'),
    ("bad_ci", r'b.json: key systems\["aam"\].eval\["ood"\].ci.cllr: expected a list \[lo, hi\], got 3 values'),
    ("seeds", r'b.json: key systems\["aam"\].seeds: expected a list of integers, got a string'),
    ("missing_metric", r'b.json: key systems\["aam"\].runs\["1"\].eval\["ind"\].cllr missing'),
    ("digest", r'b.json: key systems\["aam"\].runs\["0"\].eval\["ind"\].scores_sha256: expected a string, got a number'),
    ("deep", r"b.json: not valid JSON \(nested too deeply\)"),
    ("huge_int", r'b.json: key systems\["aam"\]\..*\["ind"\].cllr: number out of range'),
    ("oversized", r"a.json: \d+ bytes, more than the limit of 2000 \(--max-bytes\)"),
    ("nothing_common", r"b.json: no system and evaluation set in common with .*a.json"),
    ("no_file", r"b.json: no such results file"),
])
def test_bad_input_is_one_line_and_exits_2(tmp_path, capsys, case, message):
    a = _write(tmp_path / "a.json", _results())
    res = _results()
    b = tmp_path / "b.json"
    text = json.dumps(res)
    extra = []
    if case == "truncated":
        text = text[: len(text) // 2]
    elif case == "empty":
        text = ""
    elif case == "top_list":
        text = "[1, 2]"
    elif case == "no_systems":
        text = json.dumps({"environment": {}})
    elif case == "wrong_type":
        res["systems"]["jeff"]["eval"]["ind"]["eer"] = "abc"
    elif case == "bad_ci":
        res["systems"]["aam"]["eval"]["ood"]["ci"]["cllr"] = [0.1, 0.2, 0.3]
    elif case == "seeds":
        res["systems"]["aam"]["seeds"] = "0 1 2"
    elif case == "missing_metric":
        del res["systems"]["aam"]["runs"]["1"]["eval"]["ind"]["cllr"]
    elif case == "digest":
        res["systems"]["aam"]["runs"]["0"]["eval"]["ind"]["scores_sha256"] = 5
    elif case == "deep":
        text = "[" * 100_000 + "]" * 100_000
    elif case == "huge_int":
        text = text.replace(f'"cllr": {res["systems"]["aam"]["eval"]["ind"]["cllr"]!r}', '"cllr": ' + "9" * 400, 1)
    elif case == "oversized":
        extra = ["--max-bytes", "2000"]
    elif case == "nothing_common":
        res["systems"] = {"other": res["systems"]["aam"]}
    if case in ("wrong_type", "bad_ci", "seeds", "missing_metric", "digest", "nothing_common"):
        text = json.dumps(res)
    if case == "not_utf8":
        b.write_bytes(b'{"systems": "\xff"}')
    elif case != "no_file":
        b.write_text(text)
    code, out, err = _run(capsys, a, b, *extra)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("jeffreys compare-runs: error: "), err
    assert re.search(message, err), err
    assert len(err) < 400


def test_untrusted_names_are_escaped_and_shortened(tmp_path, capsys):
    res = _results()
    evil = "\x1b[31mred" + "x" * 500
    res["systems"][evil] = res["systems"].pop("jeff")
    res["systems"][evil]["eval"]["ind"]["eer"] = [1]
    a = _write(tmp_path / "a.json", _results())
    code, _, err = _run(capsys, a, _write(tmp_path / "b.json", res))
    assert code == 2 and "\x1b" not in err and "\\x1b[31mred" in err and len(err) < 300
    # And in a report: the name is printed escaped.
    ok = _results()
    ok["systems"][evil] = ok["systems"]["jeff"]
    code, out, _ = _run(capsys, _write(tmp_path / "c.json", ok), _write(tmp_path / "d.json", ok))
    assert code == 0 and "\x1b" not in out and "\\x1b[31mred" in out and "x" * 100 not in out
    # A deeply nested environment value is compared and shown as bounded text.
    deep = copy.deepcopy(ok)
    deep["environment"]["gpu"] = json.loads("[" * 900 + "]" * 900)
    code, out, _ = _run(capsys, _write(tmp_path / "c.json", ok), _write(tmp_path / "e.json", deep))
    assert code == 0 and "  gpu[0][0][0][0][0][0][0]: (absent) -> " in out and max(map(len, out.splitlines())) < 300


def test_environment_is_cheap_json_and_does_not_build_the_kernel(monkeypatch):
    from jeffreys.environment import KERNEL_VARIABLES, environment
    from jeffreys.losses import _native

    def no_build(*args, **kwargs):
        raise AssertionError("environment() must not build the loss kernel")

    monkeypatch.setattr(_native, "build", no_build)
    monkeypatch.setattr("subprocess.run", no_build)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = environment()
    assert json.loads(json.dumps(env)) == env
    for key in ("jeffreys", "python", "system", "machine", "cpu_model", "cpu_flags", "torch", "torch_cpu_capability",
                "torch_onednn", "torch_mkl", "torch_threads", "numpy", "env", "loss_kernel", "memory_format"):
        assert key in env, key
    assert set(env["env"]) == set(KERNEL_VARIABLES) and env["env"]["OMP_NUM_THREADS"] == "2"
    assert env["loss_kernel"]["mode"] in ("auto", "on", "off")
    import torch

    assert env["torch"] == torch.__version__ and env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_scores_digest_is_sha256_of_little_endian_float64():
    import struct

    import numpy as np

    from jeffreys.experiment.runner import scores_digest

    values = [0.5, -1.0, 1 / 3]
    want = hashlib.sha256(struct.pack("<3d", *values)).hexdigest()
    assert scores_digest(np.array(values)) == want == scores_digest(values)
    assert scores_digest(np.array(values, dtype=">f8")) == want  # byte order does not matter
    assert scores_digest(np.nextafter(np.array(values), 1)) != want  # one ulp does


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
                    | st.sampled_from(["nan", "inf", "-inf", "0" * 400]),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=8)


def _paths(x, prefix=()):
    yield prefix
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_a_results_json_is_an_input_error_or_a_report(tmp_path, data):
    """Any value anywhere replaced by any JSON value (or deleted): a report or one InputError."""
    good = _results()
    res = copy.deepcopy(good)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(res))))
        if not path:
            res = data.draw(JSON)
            break
        parent = res
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON)
    a = _write(tmp_path / "a.json", good)
    b = _write(tmp_path / "b.json", res)
    try:
        rep = compare_runs(a, b)
    except InputError as e:
        assert str(e).strip() and "\n" not in str(e), repr(str(e))
        return
    json.dumps(rep, default=str)
    format_report(rep)
