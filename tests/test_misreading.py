"""Nothing is silently misread.

* A trial list, a list of trial pairs or a scores file that lists a trial twice is refused
  (file, both line numbers), in either format, wherever the lines fall, never counted twice;
  ``score`` and ``metrics`` stop on it.
* A ``wav.scp`` line is read by Kaldi's rule: the first white-space run ends the id, the rest
  of the line (inner white space as written, the end trimmed) is the path; a path that does
  not exist under that rule is named, as read, in the error.
* Line numbers in messages are those of ``sed -n Np``: lines end at ``\\n`` only, whatever
  else (``\\r``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028``, ``\\u2029``) the lines
  hold; those characters stay inside their line (white space where C's ``isspace`` says so).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

from jeffreys.config import load_yaml
from jeffreys.data.datadir import read_datadir
from jeffreys.data.dataset import load_labels
from jeffreys.data.tables import read_table
from jeffreys.data.trials import read_models, read_scores, read_trial_pairs, read_trials
from jeffreys.embeddings import read_embeddings
from jeffreys.errors import InputError, shown

ODD = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def sed_line(text: str, marker: str) -> int:
    """The line ``sed`` gives the first line holding ``marker``."""
    return text[: text.index(marker)].count("\n") + 1


def _trial_line(rng, e, t, y, fmt):
    kaldi = fmt == "kaldi" or (fmt == "mixed" and rng.random() < 0.5)
    sep = lambda: rng.choice([" ", "\t", "  ", " \t"])  # noqa: E731
    return f"{e}{sep()}{t}{sep()}{'target' if y else 'nontarget'}" if kaldi else f"{int(y)}{sep()}{e}{sep()}{t}"


@pytest.mark.parametrize("fmt", ["kaldi", "vox", "mixed", "pairs", "scores", "scores-labelled"])
def test_a_trial_listed_twice_is_refused_naming_both_lines(tmp_path, fmt):
    rng = random.Random(fmt)
    for trial in range(15):
        n = rng.randint(2, 300)
        pairs = rng.sample([(f"id{a:03d}/v/{a}.wav", f"id{b:03d}/w/{b}.wav") for a in range(30) for b in range(30)], n)
        lines = []
        for e, t in pairs:
            y = rng.random() < 0.5
            if fmt == "pairs":
                lines.append(f"{e} {t}")
            elif fmt.startswith("scores"):
                lines.append(f"{e} {t} {rng.uniform(-1, 1):.4f}" + (f" {'target' if y else 'nontarget'}" if fmt == "scores-labelled" else ""))
            else:
                lines.append(_trial_line(rng, e, t, y, fmt))
        i = rng.randrange(n)
        again = lines[i]
        if fmt in ("kaldi", "vox", "mixed") and rng.random() < 0.5:  # the same pair, the other label
            e, t = pairs[i]
            again = _trial_line(rng, e, t, "nontarget" in lines[i] or lines[i].startswith("0"), fmt)
        if fmt.startswith("scores") and rng.random() < 0.5:  # the same pair, another score
            again = again.replace(again.split()[2], "0.1234", 1)
        j = rng.randint(i + 1, n)
        lines.insert(j, again)
        if fmt != "pairs" and rng.random() < 0.3:  # blank lines (refused in pairs) shift the numbers
            for _ in range(rng.randint(1, 3)):
                lines.insert(rng.randint(0, len(lines)), rng.choice(["", "  ", "\t"]))
        text = "\n".join(lines) + rng.choice(["\n", ""])
        if rng.random() < 0.3:
            text = text.replace("\n", "\r\n")
        p = tmp_path / f"{fmt}{trial}"
        p.write_bytes(text.encode())
        # the line numbers as sed gives them: the first holds pair i, the second is the copy
        rows = text.split("\n")
        holding = [k for k, r in enumerate(rows, 1) if set(pairs[i]) <= set(r.split())]
        assert len(holding) == 2
        first, second = holding
        read = {"pairs": read_trial_pairs, "scores": read_scores, "scores-labelled": read_scores}.get(fmt, read_trials)
        with pytest.raises(InputError) as e:
            read(p)
        what = "is scored again" if fmt.startswith("scores") else "is listed again"
        assert re.fullmatch(rf"{re.escape(str(p))}:{second}: (pair|trial) {re.escape(pairs[i][0])} {re.escape(pairs[i][1])} "
                            rf"{what} \(first on line {first}\); each trial must be (scored|listed) once", str(e.value)), str(e.value)


def test_score_and_metrics_stop_on_a_repeated_trial(tmp_path, capsys):
    from jeffreys.cli import main
    from jeffreys.embeddings import write_embeddings

    ids = [f"u{i}" for i in range(6)]
    write_embeddings(tmp_path / "emb", ids, np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    emb = next(p for p in tmp_path.iterdir() if p.suffix in (".scp", ".npy"))
    (tmp_path / "trials").write_text("u0 u1 target\nu0 u2 nontarget\n\nu0 u1 nontarget\n")
    assert main(["score", str(emb), "--trials", str(tmp_path / "trials"), "--out", str(tmp_path / "scores")]) == 2
    assert "trials:4: trial u0 u1 is listed again (first on line 1)" in capsys.readouterr().err
    assert not (tmp_path / "scores").exists()
    (tmp_path / "scores").write_text("u0 u1 0.5\nu0 u2 0.1\n")
    assert main(["metrics", str(tmp_path / "scores"), "--trials", str(tmp_path / "trials")]) == 2
    assert "trials:4: trial u0 u1 is listed again (first on line 1)" in capsys.readouterr().err


def _random_path_part(rng) -> str:
    words = ["my", "file", "a", "b", "Disk 2", "x.y", "é", "voice"]
    seps = [" ", "  ", "\t", " \t ", "   "]
    out = rng.choice(words)
    for _ in range(rng.randint(1, 4)):
        out += rng.choice(seps) + rng.choice(words)
    return out


def test_wav_scp_paths_are_the_rest_of_the_line_inner_white_space_kept(tmp_path):
    rng = random.Random(0)
    for trial in range(10):
        d = tmp_path / f"d{trial}"
        (d / "audio").mkdir(parents=True)
        wav, lines = {}, []
        for k in range(rng.randint(1, 8)):
            utt = f"u{k}"
            path = str(d / "audio" / (_random_path_part(rng) + f" {k}.wav"))
            Path(path).write_bytes(b"RIFF")
            wav[utt] = path
            lines.append(utt + rng.choice([" ", "\t", "  ", " \t "]) + path + rng.choice(["", " ", "\t", "\r", " \r"]))
        (d / "wav.scp").write_text("\n".join(lines) + "\n")
        (d / "utt2spk").write_text("".join(f"{u} s\n" for u in wav))
        assert read_datadir(d, check_files=True).wav == wav


def test_a_path_that_does_not_exist_under_the_rule_is_named_as_read(tmp_path):
    rng = random.Random(1)
    for trial in range(10):
        d = tmp_path / f"d{trial}"
        (d / "audio").mkdir(parents=True)
        name = _random_path_part(rng) + ".wav"
        (d / "audio" / name).write_bytes(b"RIFF")
        # the same name with its white-space runs changed: what " ".join(split()) would find
        other = re.sub(r"\s+", lambda m: " " if m.group(0) != " " else "  ", name)
        wrong = str(d / "audio" / other)
        (d / "wav.scp").write_text(f"u0 {d / 'audio' / name}\nu1 {wrong}\n")
        (d / "utt2spk").write_text("u0 s\nu1 s\n")
        with pytest.raises(InputError) as e:
            read_datadir(d, check_files=True)
        assert str(e.value) == f"{d / 'wav.scp'}:2: audio file of 'u1' not found: {shown(wrong)}"
        assert shown(wrong) == repr(wrong)  # quoted: the white space shows


# reader, file name, i-th valid line (``odd`` placed inside or next to a field), a bad line
NUMBERED = {
    "trials": (read_trials, "trials", lambda i, odd: f"e{i}{odd} t{i} target", "x y maybe"),
    "scores": (read_scores, "scores", lambda i, odd: f"e{i} t{i}{odd} 0.5", "a b c d e f"),
    "table": (read_table, "utt2spk", lambda i, odd: f"u{i}{odd} s", "u s extra"),
    "models": (read_models, "models", lambda i, odd: f"m{i} u{odd} v", "m0 w"),
    "labels": (load_labels, "labels.txt", lambda i, odd: f"s{i}{odd} {i}", "sX 999999"),
    "scp": (lambda p: read_embeddings(p), "x.scp", None, "lonely"),  # valid lines: a real ark's
    "config": (load_yaml, "c.yaml", lambda i, odd: f'k{i}: "a{odd}b"', "oops: [1, 2\nd: ]"),
    "utt2spk-dir": (lambda p: read_datadir(p.parent, check_files=False), "utt2spk",
                    lambda i, odd: f"u{i:05d}{odd} s", "u99999 s extra"),
}


@pytest.mark.parametrize("name", sorted(NUMBERED))
def test_line_numbers_are_seds_whatever_the_lines_hold(tmp_path, name):
    read, fname, valid, bad = NUMBERED[name]
    rng = random.Random(name)
    for trial in range(12):
        n = rng.randint(1, 60)
        d = tmp_path / str(trial)
        d.mkdir()
        odds = ODD
        if name == "config":  # YAML refuses the C0 controls
            odds = ["\r", "\x85", "\u2028", "\u2029"]
        elif name == "scp":  # an embedding id holds no white space of any kind (Unicode's included)
            odds = ["\r", "\x0b", "\x0c"]
            from jeffreys.embeddings import write_embeddings

            write_embeddings(d / "e", [f"u{i}" for i in range(n)], np.ones((n, 2), np.float32))
            entries = dict(line.split(" ", 1) for line in (d / "e.scp").read_text().split("\n") if line)
            valid = lambda i, odd: f"u{i}{odd} {entries[f'u{i}']}"  # noqa: E731
        lines = []
        for i in range(n):
            odd = [rng.choice(odds) for _ in range(rng.randint(0, 3))] if rng.random() < 0.6 else []
            # the field's own characters first, then white space: the line keeps its fields
            odd = "".join(sorted(odd, key=lambda c: c in "\r\x0b\x0c"))
            lines.append(valid(i, odd))
        k = rng.randint(0, n)
        if name == "models":
            bad = lines[0].split(" ")[0] + " w"  # a model again
            k = max(k, 1)
        elif name == "labels":
            k = n  # after the valid labels, with a wrong number
        elif name == "utt2spk-dir":
            lines = [valid(i, "") for i in range(n)]  # ids must be the wav.scp's
            lines[-1] = lines[-1] + rng.choice(["\r", "\x0b", "\x0c", " \x0c"])
            k = n
            bad = f"u{n - 1:05d}X\x85 s"  # after the last utterance: unknown to wav.scp
        lines.insert(k, bad)
        text = "\n".join(lines) + "\n"
        (d / fname).write_text(text, encoding="utf-8")
        if name == "utt2spk-dir":
            (d / "wav.scp").write_text("".join(f"u{i:05d} /x/{i}.wav\n" for i in range(n)))
        expected = sed_line(text, bad.split("\n")[-1] if name == "config" else bad)
        with pytest.raises(InputError) as e:
            read(d / fname)
        message = str(e.value)
        assert re.match(rf"{re.escape(str(d / fname))}:( line)? ?{expected}:", message), (expected, message)
