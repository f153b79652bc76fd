"""The `jeffreys` command: help, version, every sub-command's help, one-line errors."""

import re
import subprocess
import sys

import pytest

from jeffreys import __version__
from jeffreys.cli import COMMANDS, main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jeffreys", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_command():
    r = run("--help")
    assert r.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in r.stdout


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"jeffreys {__version__}"


def test_unknown_command_is_an_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"jeffreys {name}" in capsys.readouterr().out


def test_error_from_a_dataloader_worker_prints_one_line(tmp_path, capsys):
    # torch re-raises a worker's exception with the worker's traceback as its message.
    from torch.utils.data import DataLoader, Dataset

    from jeffreys.errors import InputError

    class Bad(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise InputError(f"{tmp_path}/wav.scp:3: audio file of 'u1' not found")

    with pytest.raises(InputError) as e:
        next(iter(DataLoader(Bad(), num_workers=1)))
    assert "\n" in str(e.value)  # what torch hands back

    import jeffreys.cli as cli

    def fake(argv):
        raise e.value

    module = type(sys)("fake_stage")
    module.cli_fake = fake
    sys.modules["fake_stage"] = module
    cli.COMMANDS["fake"] = ("fake_stage", "test only")
    try:
        assert cli.main(["fake"]) == 2
    finally:
        del cli.COMMANDS["fake"], sys.modules["fake_stage"]
    err = capsys.readouterr().err
    assert err == f"jeffreys fake: error: {tmp_path}/wav.scp:3: audio file of 'u1' not found\n"


def test_every_limit_is_an_option_and_a_list_limit_refuses_through_it(tmp_path):
    """Every limit a reader reads from the environment has its option before the command
    (the issue: "overridable on the command line"); ``--max-list-lines 3`` refuses a
    generated 10-line scores file in one line, exit 2, and without it the same files pass."""
    import random

    from jeffreys.audio import AudioLimits
    from jeffreys.cli import LIMIT_OPTIONS
    from jeffreys.fileio import LIMITS
    from jeffreys.models.bundle import MAX_BYTES_ENV

    assert {env for env, _, _ in LIMIT_OPTIONS.values()} == {*LIMITS, *AudioLimits.ENV.values(), MAX_BYTES_ENV}
    rng = random.Random(0)
    pairs = [(f"e{i}", f"t{rng.randrange(1000)}_{i}", rng.choice(["target", "nontarget"])) for i in range(10)]
    pairs[:2] = [("e0", "t0", "target"), ("e1", "t1", "nontarget")]  # both kinds
    (tmp_path / "trials").write_text("".join(f"{e} {t} {y}\n" for e, t, y in pairs))
    (tmp_path / "scores").write_text("".join(f"{e} {t} {rng.uniform(-1, 1):.4f}\n" for e, t, _ in pairs))
    args = ["metrics", str(tmp_path / "scores"), "--trials", str(tmp_path / "trials")]
    r = run("--max-list-lines", "3", *args)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert re.fullmatch(rf"jeffreys metrics: error: {re.escape(str(tmp_path))}/(scores|trials): more than 3 lines, the limit "
                        r"\(JEFFREYS_MAX_LIST_LINES raises it\)\n", r.stderr), r.stderr
    r = run("--max-list-lines=10", *args)
    assert r.returncode == 0, r.stderr


def test_an_error_line_is_one_write_with_its_newline(monkeypatch, tmp_path):
    # print() writes the text and the newline apart on a non-terminal stderr: the lines of two
    # torchrun ranks sharing it then ran into each other (seen in tests/test_extract_shard.py)
    import io
    import sys

    from jeffreys.cli import main

    writes = []

    class Recorder(io.StringIO):
        def write(self, s):
            writes.append(s)
            return len(s)

    monkeypatch.setattr(sys, "stderr", Recorder())
    assert main(["metrics", str(tmp_path / "missing.txt")]) == 2
    assert main(["no-such-command"]) == 2
    assert len(writes) == 2 and all(w.endswith("\n") and w.startswith("jeffreys") for w in writes)
