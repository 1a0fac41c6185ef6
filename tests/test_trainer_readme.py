"""Issue 14 item 8: every trainer / export / convert command documented in README.md and trainer_hooks/README.md
runs as written, at tiny size, on a real pipeline output built with the default (bundled, 21,128-token) vocab.

Documented commands are fenced code lines and inline code spans that contain ``python -m trainer_hooks.``.
Their notation: upper-case placeholders (``DIR``/``OUT`` the pipeline output, ``RUN`` the training run,
``EXPORT``, ``HF_DIR``, ``VOCAB``, ``N`` in ``ckpt-N``), ``[...]`` optional parts (included: their flags must
exist too), ``a|b`` alternatives (the first is run, every one must parse) and ``...`` (the options of the
previous command of the same module in the same file). Sizes are shrunk (2 steps, batch 2); nothing else is
changed, so a wrong path, flag or placeholder fails the test. A ``horovodrun`` line is parsed by horovod's own
launcher parser rather than run (tests/test_trainer_horovod.py runs the trainer on 2 ranks).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Optional

import pytest

tf = pytest.importorskip("tensorflow")

from tests.pipeline_util import SAMPLE, build  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "trainer_hooks" / "README.md"]
MODULES = ("trainer_hooks.pretrain", "trainer_hooks.export", "trainer_hooks.convert_hf", "trainer_hooks.finetune",
           "trainer_hooks.import_checkpoint", "trainer_hooks.distill")
TINY = {"--num_train_steps": "2", "--train_batch_size": "2", "--num_warmup_steps": "1", "--num_epochs": "1"}


def documented_commands(path: Path) -> list[str]:
    """Command lines naming a trainer_hooks module, in document order (fenced blocks first, then inline)."""
    text = path.read_text(encoding="utf-8")
    found: list[str] = []

    def fenced(m: re.Match) -> str:
        for line in m.group(1).replace("\\\n", " ").splitlines():
            if "trainer_hooks." in line and not line.lstrip().startswith("#"):
                found.append(" ".join(line.split()))
        return ""

    rest = re.sub(r"```[^\n]*\n(.*?)```", fenced, text, flags=re.S)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", rest) if "python -m trainer_hooks." in span]
    return found


def split_command(line: str) -> tuple[list[str], str, list[str]]:
    """(launcher words before ``python``, module, module arguments) with optional-part brackets removed."""
    words = [w.strip("[]") for w in shlex.split(line, comments=True)]
    words = [w for w in words if w]
    at = words.index("python")
    assert words[at + 1] == "-m", line
    return words[:at], words[at + 2], words[at + 3:]


class Placeholders:
    def __init__(self, out: Path, tmp: Path, vocab: str) -> None:
        self.values = {"DIR": str(out), "OUT": str(out), "EXPORT": str(tmp / "export"), "HF_DIR": str(tmp / "hf"),
                       "VOCAB": vocab, "FT": str(tmp / "ft"), "LITE": str(tmp / "lite"),
                       "IMPORTED": str(tmp / "imported"), "BERT": str(tmp / "bert"), "LCQMC": str(tmp / "lcqmc"),
                       "ASSISTANT": str(tmp / "assistant"), "STUDENT": str(tmp / "student"),
                       "STUDENT_FT": str(tmp / "student_ft"), "STUDENT_EXPORT": str(tmp / "student_export")}
        self.tmp, self.runs = tmp, 0

    def new_run(self) -> Optional[str]:
        """Point RUN at a fresh directory; returns the previous one."""
        self.runs += 1
        previous = self.values.get("RUN")
        self.values["RUN"] = str(self.tmp / f"run{self.runs}")
        return previous

    def fill(self, word: str) -> str:
        unknown = set(re.findall(r"\b[A-Z][A-Z_]+\b", word)) - set(self.values) - {"RUN"}
        assert not unknown, f"unknown placeholder {sorted(unknown)} in {word!r}"
        head, sep, tail = word.partition("/")
        if head in self.values:
            word = self.values[head] + sep + tail
        if "ckpt-N" in word:
            word = word.replace("ckpt-N", os.path.basename(tf.train.latest_checkpoint(self.values["RUN"])))
        return word


def shrink(args: list[str]) -> list[str]:
    out = list(args)
    for i, w in enumerate(out[:-1]):
        if w in TINY:
            out[i + 1] = TINY[w]
    return out


@pytest.fixture(scope="module")
def pipeline_out(tmp_path_factory) -> Path:
    """A real pipeline output, all defaults (the bundled standard vocab) but a tiny input and 2 shards."""
    tmp = tmp_path_factory.mktemp("readme_pipeline")
    first = json.loads((SAMPLE / "zhwiki_sample.jsonl").read_text(encoding="utf-8").splitlines()[0])
    first["text"] = first["text"][:1200]
    src = tmp / "one.jsonl"
    src.write_text(json.dumps(first, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp / "out"
    manifest = build(out, "--dupe_factor", "1", "--num_shards", "2", "--num_doc_shards", "1",
                     inputs=["--input", str(src)])
    assert manifest["tfrecords"]["vocab_size"] == 21128 and manifest["tfrecords"]["num_instances"] >= 4
    return out


def test_documented_config_paths_exist():
    for doc in DOCS:
        for rel in re.findall(r"trainer_hooks/configs/[\w.-]+\.json", doc.read_text(encoding="utf-8")):
            assert (REPO / rel).is_file(), f"{doc.name} names {rel}, which does not exist"


def test_shipped_configs_fit_the_default_pipeline_output(pipeline_out):
    """The shipped 21,128-token configs pass every start check against a default build (the bundled vocab)."""
    from trainer_hooks import data
    from trainer_hooks.config import CONFIG_DIR, ModelConfig
    manifest = data.load_manifest(str(pipeline_out / "manifest.json"))
    shards = data.resolve_shards(str(pipeline_out / "tfrecords" / "*"), manifest)
    names = sorted(os.listdir(CONFIG_DIR))
    assert len(names) == 9, names
    for name in names:
        data.check_run(manifest, ModelConfig.from_json_file(os.path.join(CONFIG_DIR, name)), shards, 2)
    assert data.manifest_vocab_file(manifest) is not None  # export's default vocab: the manifest's


def test_documented_trainer_commands_run(pipeline_out, tmp_path, monkeypatch, capsys):
    from corpusflow.tokenize import DEFAULT_VOCAB
    monkeypatch.chdir(REPO)  # documented relative paths (trainer_hooks/configs/...) are from the repo root
    ph = Placeholders(pipeline_out, tmp_path, DEFAULT_VOCAB)
    # Inputs of the worked example: a tiny release checkpoint in Google BERT naming and LCQMC-style pair files.
    from tests.test_finetune import pair_file
    from tests.test_import_checkpoint import write_bert_release
    write_bert_release(Path(ph.values["BERT"]), DEFAULT_VOCAB,
                       json.loads((pipeline_out / "manifest.json").read_text())["tfrecords"]["max_seq_length"])
    lcqmc = Path(ph.values["LCQMC"])
    lcqmc.mkdir()
    pair_file(lcqmc / "train.tsv", 12, 0), pair_file(lcqmc / "dev.tsv", 6, 1)
    (lcqmc / "pairs.txt").write_text("足球比赛\t篮球冠军\n银行利率\t足球教练\n", encoding="utf-8")
    commands = [(doc, line) for doc in DOCS for line in documented_commands(doc)]
    modules = {split_command(line)[1] for _, line in commands}
    assert modules == set(MODULES), modules  # every tool is documented, and nothing else is called
    previous: dict[tuple[Path, str], list[str]] = {}
    for doc, line in commands:
        where = f"{doc.relative_to(REPO)}: {line}"
        launcher, module, raw = split_command(line)
        assert module in MODULES, where
        if "..." in raw:
            assert (doc, module) in previous, f"{where}: '...' with no earlier {module} command in this file"
            i = raw.index("...")
            raw = raw[:i] + previous[doc, module] + raw[i + 1:]
        elif "--help" not in raw:
            previous[doc, module] = raw
        main = importlib.import_module(module)
        parse = main.parse_args if module == "trainer_hooks.pretrain" else main.build_parser().parse_args
        if module == "trainer_hooks.finetune" and raw[:1] == ["predict"]:
            parse = lambda a: main.build_predict_parser().parse_args(a[1:])  # noqa: E731
        trained_before = None
        if module == "trainer_hooks.pretrain" and "--help" not in raw:
            trained_before = ph.new_run()
        args = shrink([ph.fill(w) for w in raw])
        # a|b: every alternative must be accepted; the first one is run.
        alternatives = [(i, w.split("|")) for i, w in enumerate(args) if "|" in w and not w.startswith("-")]
        for i, alts in alternatives:
            for alt in alts:
                parse(args[:i] + [alt] + args[i + 1:])
            args[i] = alts[0]
        if "--help" in args:
            with pytest.raises(SystemExit) as done:
                parse(args)
            assert done.value.code == 0, where
            assert "(default:" in capsys.readouterr().out, where
            continue
        if module == "trainer_hooks.convert_hf":
            pytest.importorskip("torch")
            pytest.importorskip("transformers")
        if launcher:
            # Checked, not run: horovodrun's own parser must accept the launcher words and find the command, and
            # the command's options are those of the previous one, which did run. A real 2-rank run of the
            # trainer is tests/test_trainer_horovod.py (about 25 s more here).
            assert launcher[0] == "horovodrun", where
            launch = pytest.importorskip("horovod.runner.launch", exc_type=ImportError)
            monkeypatch.setattr(sys, "argv", [*launcher, sys.executable, "-m", module, *args])
            hvd_args = launch.parse_args()
            assert hvd_args.command == [sys.executable, "-m", module, *args], where
            assert hvd_args.num_proc == 2 and hvd_args.hosts == "localhost:2", where
            assert parse(args).horovod, where
            ph.values["RUN"] = trained_before  # later commands use the last run that did train
            continue
        else:
            assert main.main(args) == 0, where
        output = args[args.index("--output") + 1] if "--output" in args else None
        if module == "trainer_hooks.pretrain":
            assert tf.train.latest_checkpoint(ph.values["RUN"]).endswith("ckpt-2"), where
        elif module == "trainer_hooks.distill":
            assert tf.train.latest_checkpoint(args[args.index("--model_dir") + 1]).endswith("ckpt-2"), where
        elif module == "trainer_hooks.export" and "--tflite" in args:
            assert (Path(ph.values["LITE"]) / "model.tflite").is_file(), where
        elif module == "trainer_hooks.import_checkpoint":
            assert json.loads((Path(ph.values["IMPORTED"]) / "import_report.json").read_text())["missing"] == [], where
        elif module == "trainer_hooks.finetune":
            out = Path(output) / "metrics.json" if args[0] != "predict" else None
            assert out is None or json.loads(out.read_text())["labels"] == ["0", "1"], where
            if out is None:
                lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('{"line"')]
                assert [json.loads(ln)["line"] for ln in lines] == [1, 2], where
        elif module == "trainer_hooks.export":
            assert (Path(output) / "saved_model").is_dir() and \
                (Path(output) / "vocab.txt").read_bytes() == Path(DEFAULT_VOCAB).read_bytes(), where
        else:
            assert (Path(ph.values["HF_DIR"]) / "config.json").is_file(), where
