"""Fine-tuning (`jeffreys train --init MODEL.pt --freeze ...`): the example of
docs/training.md run as written, and what it must have done: the bundle's extractor as the
starting point, frozen modules (weights and BatchNorm statistics) bit-identical to it, the
others trained, a new head for the new speakers."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import torch

from jeffreys.cli import main
from jeffreys.models import load_bundle
from train_helpers import make_datadir, tiny_overrides

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def doc_example(root: Path) -> list[list[str]]:
    """Writes the '# file:' YAML blocks of docs/training.md into ``root``; returns the
    commands of the sh block after the '<!-- fine-tuning example -->' marker."""
    text = DOC.read_text(encoding="utf-8")
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        first = block.splitlines()[0]
        if first.startswith("# file: "):
            (root / first[len("# file: "):].strip()).write_text(block)
    m = re.search(r"<!-- fine-tuning example -->\s*```sh\n(.*?)```", text, flags=re.S)
    assert m, "docs/training.md lost its marked fine-tuning example"
    return [shlex.split(line) for line in m.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def test_the_fine_tuning_example_of_the_docs(tmp_path, monkeypatch, capsys):
    commands = doc_example(tmp_path)
    assert [c[:2] for c in commands] == [["jeffreys", "prepare"], ["jeffreys", "train"], ["jeffreys", "train"]]
    monkeypatch.chdir(tmp_path)
    for cmd in commands:  # in this process: `jeffreys ARGS` is main(ARGS)
        assert main(cmd[1:]) == 0, (cmd, capsys.readouterr().err[-2000:])
    base = load_bundle(tmp_path / "exp" / "base" / "model.pt")
    tuned = load_bundle(tmp_path / "exp" / "finetune" / "model.pt")
    assert tuned.config == base.config  # the bundle's model section, not the config's default
    assert len(base.speakers) == 8 and len(tuned.speakers) == 6 and tuned.head.weight.shape == (6, 32)
    b, t = base.model.state_dict(), tuned.model.state_dict()
    frozen = [k for k in b if k.startswith(("embedder.stem.", "embedder.stages.0."))]
    assert any("running_mean" in k for k in frozen)  # BatchNorm statistics among them
    for k in frozen:
        assert torch.equal(b[k], t[k]), k
    trained = [k for k in b if k.startswith("embedder.stages.1.") and k.endswith("weight")]
    assert trained and all(not torch.equal(b[k], t[k]) for k in trained)
    log = (tmp_path / "exp" / "finetune" / "train.log").read_text()
    assert "initialised from exp/base/model.pt, frozen: stem, stages.0" in log
    assert tuned.meta["train_config"]["init"] == "exp/base/model.pt"


def test_bad_init_and_freeze_are_one_line_errors(tmp_path, capsys):
    data = make_datadir(tmp_path / "data")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}\n")
    sets = [a for o in tiny_overrides(data, steps=2) for a in ("--set", o)]
    assert main(["train", str(cfg), "--exp-dir", str(tmp_path / "a"), *sets, "--freeze", "stem,stages.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "key 'freeze': 'stages.9' is not a module of the embedder" in err and "stem, stages" in err and "\n" not in err
    assert main(["train", str(cfg), "--exp-dir", str(tmp_path / "b"), *sets, "--init", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "none.pt: no such model bundle file" in err and "\n" not in err
    # a freeze of everything trainable in the embedder still trains the head
    assert main(["train", str(cfg), "--exp-dir", str(tmp_path / "c"), *sets, "--freeze", "stem,stages,embedding"]) == 0
