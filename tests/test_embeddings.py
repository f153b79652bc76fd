"""Embedding files: ark/scp and npy+ids round trips, format detection, bad input."""

import numpy as np
import pytest

from jeffreys.embeddings import EmbeddingTable, read_embeddings, write_embeddings
from jeffreys.errors import InputError


@pytest.fixture
def emb():
    rng = np.random.default_rng(0)
    return [f"id{i:03d}/v/{i}.wav" for i in range(17)], rng.standard_normal((17, 8)).astype(np.float32)


@pytest.mark.parametrize("fmt,exts", [("kaldi", (".ark", ".scp")), ("npy", (".npy", ".ids"))])
def test_round_trip(tmp_path, emb, fmt, exts):
    ids, m = emb
    written = write_embeddings(tmp_path / "sub" / "xvector", ids, m, fmt=fmt)
    assert [p.suffix for p in written] == list(exts)
    for path in [tmp_path / "sub" / "xvector", *written]:  # prefix or any of the files
        got_ids, got = read_embeddings(path)
        assert got_ids == ids and got.dtype == np.float32
        assert np.array_equal(got, m)


def test_kaldi_files_are_kaldi(tmp_path, emb):
    import kaldiio

    ids, m = emb
    write_embeddings(tmp_path / "x.scp", ids, m)
    d = kaldiio.load_scp(str(tmp_path / "x.scp"))
    assert list(d) == ids and np.array_equal(d[ids[3]], m[3])
    # a scp written by someone else, relative to its own directory
    (tmp_path / "rel.scp").write_text("".join(f"{u} x.ark:{line.split(':')[-1]}\n" for u, line in zip(ids, (tmp_path / "x.scp").read_text().splitlines())))
    assert np.array_equal(read_embeddings(tmp_path / "rel.scp")[1], m)


def test_piped_scp_is_refused(tmp_path):
    (tmp_path / "p.scp").write_text("u1 touch /tmp/owned |\n")
    with pytest.raises(InputError, match=r"p.scp:1: 'u1' is a command"):
        read_embeddings(tmp_path / "p.scp")


def test_bad_input(tmp_path, emb):
    ids, m = emb
    with pytest.raises(InputError, match="duplicate id 'a'"):
        write_embeddings(tmp_path / "d", ["a", "b", "a"], m[:3])
    with pytest.raises(InputError, match="3 ids for 2 embeddings"):
        write_embeddings(tmp_path / "d", ["a", "b", "c"], m[:2])
    with pytest.raises(InputError, match="whitespace"):
        write_embeddings(tmp_path / "d", ["a b"], m[:1])
    bad = m[:2].copy()
    bad[1, 0] = np.nan
    with pytest.raises(InputError, match="embedding of 'b' is not finite"):
        write_embeddings(tmp_path / "d", ["a", "b"], bad)
    with pytest.raises(InputError, match="unknown embedding format"):
        write_embeddings(tmp_path / "d", ["a"], m[:1], fmt="hdf5")
    with pytest.raises(InputError, match="no such embeddings file"):
        read_embeddings(tmp_path / "nothing")
    np.save(tmp_path / "lonely.npy", m)
    with pytest.raises(InputError, match="no id list lonely.ids"):
        read_embeddings(tmp_path / "lonely.npy")
    (tmp_path / "lonely.ids").write_text("a\nb\n")
    with pytest.raises(InputError, match="2 ids for 17 embeddings"):
        read_embeddings(tmp_path / "lonely.npy")
    (tmp_path / "gone.scp").write_text("u1 missing.ark:12\n")
    with pytest.raises(InputError, match="gone.scp:1: 'u1': no such file"):
        read_embeddings(tmp_path / "gone.scp")


def test_missing_ids_are_listed():
    t = EmbeddingTable(["a", "b"], np.eye(2))
    assert t.rows(["b", "a", "b"]).tolist() == [1, 0, 1]
    with pytest.raises(InputError, match="2 ids of the trial list have no embedding in embeddings; first: x, y"):
        t.rows(["a", "x", "y", "x"])
