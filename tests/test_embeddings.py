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
    with pytest.raises(InputError, match="gone.scp:1: 'u1': missing.ark: no such Kaldi ark file"):
        read_embeddings(tmp_path / "gone.scp")


def test_missing_ids_are_listed():
    t = EmbeddingTable(["a", "b"], np.eye(2))
    assert t.rows(["b", "a", "b"]).tolist() == [1, 0, 1]
    with pytest.raises(InputError, match="2 ids of the trial list have no embedding in embeddings; first: x, y"):
        t.rows(["a", "x", "y", "x"])


def _vector_file(path, v):
    import kaldiio

    with open(path, "wb") as f:
        kaldiio.save_mat(f, np.asarray(v, dtype=np.float32))


def test_scp_pipes_run_only_on_request_and_without_a_shell(tmp_path):
    import sys

    _vector_file(tmp_path / "v.bin", [1.0, 2.0, 3.0])
    cat = f"{sys.executable} -c 'import sys;sys.stdout.buffer.write(open(sys.argv[1],\"rb\").read())' {tmp_path / 'v.bin'} |"
    (tmp_path / "p.scp").write_text(f"u1 {cat}\nu2 {cat}[1:2]\n")
    with pytest.raises(InputError, match=r"p.scp:1: 'u1' is a command .*--allow-pipes"):
        read_embeddings(tmp_path / "p.scp")
    (tmp_path / "q.scp").write_text(f"u1 {cat}\n")
    ids, m = read_embeddings(tmp_path / "q.scp", allow_pipes=True)
    assert ids == ["u1"] and m.tolist() == [[1.0, 2.0, 3.0]]
    (tmp_path / "r.scp").write_text(f"u1 {cat}[1:2]\n")  # Kaldi's inclusive range
    assert read_embeddings(tmp_path / "r.scp", allow_pipes=True)[1].tolist() == [[2.0, 3.0]]
    (tmp_path / "s.scp").write_text(f"u1 cat {tmp_path / 'v.bin'} > {tmp_path / 'w'} |\n")
    with pytest.raises(InputError, match="shell syntax"):
        read_embeddings(tmp_path / "s.scp", allow_pipes=True)
    assert not (tmp_path / "w").exists()


def test_only_kaldi_matrices_and_vectors_are_parsed(tmp_path, emb):
    import pickle

    ids, m = emb
    write_embeddings(tmp_path / "x", ids[:2], m[:2])
    data = (tmp_path / "x.ark").read_bytes()
    for name, record, why in [
        ("pkl", b"PKL" + pickle.dumps(np.ones(8, np.float32)), "pickled Python object"),
        ("riff", b"RIFF" + bytes(40), "audio"),
        ("npy", b"NPY" + bytes(40), "numpy record"),
        ("junk", b"\x01\x02\x03", "not a Kaldi matrix or vector"),
    ]:
        (tmp_path / f"{name}.ark").write_bytes(data + f"{ids[2]} ".encode() + record)
        with pytest.raises(InputError, match=f"{name}.ark: record 3 .*{why}"):
            read_embeddings(tmp_path / f"{name}.ark")
    # a text-format ark (Kaldi's copy-vector ark,t:) is data too
    (tmp_path / "t.ark").write_text("a  [ 1 2 3 ]\nb  [ 4 5 6 ]\n")
    assert read_embeddings(tmp_path / "t.ark")[1].tolist() == [[1, 2, 3], [4, 5, 6]]
    # an offset past the end, a device, stdin
    for loc, why in [(f"{tmp_path / 'x.ark'}:99999", "past the end"), ("/dev/zero:0", "not a regular file"), ("-", "standard input")]:
        (tmp_path / "o.scp").write_text(f"a {loc}\n")
        with pytest.raises(InputError, match=why):
            read_embeddings(tmp_path / "o.scp")


def test_ark_and_scp_appear_together(tmp_path, emb):
    ids, m = emb
    (tmp_path / "x.scp").mkdir()  # the scp cannot be written: the ark must not appear either
    with pytest.raises(InputError, match="x.scp: is a directory"):
        write_embeddings(tmp_path / "x", ids, m)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.scp"]


# ----------------------------------------------------------------------------- size limit
LIMIT = "JEFFREYS_MAX_EMBEDDING_BYTES"


def test_ark_and_npy_past_the_limit_are_refused_from_their_size(tmp_path, monkeypatch):
    """Random matrices under random limits: a file is read exactly when its size is within
    the limit; past it, refused before a record is parsed (a sparse file of zeros, which
    would otherwise be scanned for a key, is refused as fast)."""
    from jeffreys import embeddings

    rng = np.random.default_rng(3)
    for trial in range(12):
        n, d = int(rng.integers(1, 40)), int(rng.integers(1, 64))
        m = rng.standard_normal((n, d)).astype(np.float32)
        ids = [f"u{i}" for i in range(n)]
        for fmt, ext in (("kaldi", ".ark"), ("npy", ".npy")):
            data = write_embeddings(tmp_path / f"{trial}{fmt}" / "x", ids, m, fmt=fmt)[0]
            size = data.stat().st_size
            max_bytes = int(rng.integers(size // 2, size * 2))
            monkeypatch.setenv(LIMIT, str(max_bytes))
            if size <= max_bytes:
                assert np.array_equal(read_embeddings(data)[1], m)
                continue
            with pytest.raises(InputError) as e:
                read_embeddings(data)
            assert str(e.value) == f"{data}: {size} bytes, more than the limit of {max_bytes} ({LIMIT} raises it)"
    parsed = []
    monkeypatch.setattr(embeddings, "_read_record", lambda *a: parsed.append(1))
    monkeypatch.setenv(LIMIT, "1000")
    for size in (1001, 1 << 20, 1 << 30):  # holes cost no disk
        with open(tmp_path / "zeros.ark", "wb") as f:
            f.truncate(size)
        with pytest.raises(InputError, match=rf"zeros\.ark: {size} bytes, more than the limit of 1000 \({LIMIT}"):
            read_embeddings(tmp_path / "zeros.ark")
    assert not parsed


def test_npy_header_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    from numpy.lib import format as npy_format

    rng = np.random.default_rng(4)
    for trial in range(20):
        rows, cols = (int(x) for x in rng.integers(1, 10**7, 2))
        stored = int(rng.integers(0, 64))
        claim = {"descr": str(rng.choice(["<f4", "<f8", "<i2"])), "fortran_order": False, "shape": (rows, cols)}
        path = tmp_path / f"{trial}.npy"
        with open(path, "wb") as f:
            (npy_format.write_array_header_1_0 if trial % 2 else npy_format.write_array_header_2_0)(f, claim)
            f.write(bytes(stored))
        (tmp_path / f"{trial}.ids").write_text("u\n")
        with pytest.raises(InputError, match=rf"{trial}\.npy: not a embeddings \.npy array file \(its header claims shape "
                                             rf"\({rows}, {cols}\) of .*, more than the file holds\)"):
            read_embeddings(path)  # numpy alone: a MemoryError (terabytes) or a huge allocation
    # a header that tells the truth reads as before
    np.save(tmp_path / "ok.npy", np.ones((3, 2), np.float32))
    (tmp_path / "ok.ids").write_text("a\nb\nc\n")
    assert read_embeddings(tmp_path / "ok.npy")[1].shape == (3, 2)


def test_scp_naming_records_many_times_is_bounded_by_the_records_read(tmp_path, monkeypatch):
    """An scp whose lines all name one record (a small ark, a list within the list limits)
    would stack it a million times; the records read are summed and refused at the line that
    passes the limit."""
    rng = np.random.default_rng(5)
    for trial in range(8):
        d = int(rng.integers(1, 300))
        write_embeddings(tmp_path / f"{trial}" / "one", ["a"], rng.standard_normal((1, d)))
        ark = tmp_path / f"{trial}" / "one.ark"
        offset = (tmp_path / f"{trial}" / "one.scp").read_text().split(":")[-1].strip()
        n = int(rng.integers(2, 200))
        max_bytes = int(rng.integers(4 * d, 4 * d * n))
        monkeypatch.setenv(LIMIT, str(max_bytes))
        scp = tmp_path / f"{trial}" / "many.scp"
        scp.write_text("".join(f"u{i} {ark}:{offset}\n" for i in range(n)))
        k = max_bytes // (4 * d) + 1  # the first line whose record passes the limit
        with pytest.raises(InputError, match=rf"many\.scp:{k}: 'u{k - 1}': the records read pass {max_bytes} bytes, "
                                             rf"the limit \({LIMIT} raises it\)"):
            read_embeddings(scp)
        monkeypatch.setenv(LIMIT, str(4 * d * n))  # all of them, exactly
        assert read_embeddings(scp)[1].shape == (n, d)


def test_scp_command_output_is_bounded(tmp_path, monkeypatch):
    """A command of an scp (pipes allowed) writing a record larger than the limit, or junk
    past it, is stopped at the limit."""
    import sys

    rng = np.random.default_rng(6)
    for trial in range(4):
        d = int(rng.integers(100, 5000))
        _vector_file(tmp_path / f"v{trial}.bin", rng.standard_normal(d))
        size = (tmp_path / f"v{trial}.bin").stat().st_size
        cat = (f"{sys.executable} -c 'import sys;sys.stdout.buffer.write(open(sys.argv[1],\"rb\").read() * int(sys.argv[2]))' "
               f"{tmp_path / f'v{trial}.bin'} {int(rng.integers(1, 4))} |")
        (tmp_path / "p.scp").write_text(f"u1 {cat}\n")
        max_bytes = int(rng.integers(1, size))
        monkeypatch.setenv(LIMIT, str(max_bytes))
        with pytest.raises(InputError, match=rf"p\.scp:1: 'u1': .* the pipeline wrote more than {max_bytes} bytes of "
                                             rf"embeddings, the limit \({LIMIT} raises it\); stopped"):
            read_embeddings(tmp_path / "p.scp", allow_pipes=True)
    monkeypatch.setenv(LIMIT, str(size))
    (tmp_path / "p.scp").write_text(f"u1 {cat.replace(cat.split()[-2], '1')}\n")
    assert read_embeddings(tmp_path / "p.scp", allow_pipes=True)[1].shape == (1, d)
