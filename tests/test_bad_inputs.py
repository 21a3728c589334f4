"""Bad input to every command: one clear message, exit 2 (3 for the safety rail), nothing half-written left.

Each row of :data:`CASES` builds its inputs in ``tmp_path`` and runs the dispatcher in-process; every case fails
before a model is loaded, so the table is fast. The subprocess test checks what a user sees: no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_unlearn.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
QA = [
    {"question": f"Q{i}: where does person {i} live?", "answer": f"city {i}", "subject": f"p{i}"}
    for i in range(6)
]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def fake_model(path: Path) -> str:
    """A folder that passes the 'is this a saved model' check (config.json) without weights."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text("{}")
    return str(path)


def snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


class Inputs:
    """Paths a case may use, made lazily inside ``tmp_path``."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.out = tmp / "out"

    @property
    def forget(self) -> str:
        return write_jsonl(self.tmp / "forget.jsonl", QA[:2])

    @property
    def retain(self) -> str:
        return write_jsonl(self.tmp / "retain.jsonl", QA[2:])

    @property
    def model(self) -> str:
        return fake_model(self.tmp / "model")

    def out_with_model(self) -> str:
        fake_model(self.out)
        (self.out / "whp_dictionary.json").write_text('{"names": []}')
        return str(self.out)

    def file(self, name: str, text: str) -> str:
        (self.tmp / name).write_text(text)
        return str(self.tmp / name)


def _unlearn(i: Inputs, *extra: str) -> list[str]:
    return ["unlearn", "npo", "--model", i.model, "--forget", i.forget, "--retain", i.retain, *extra]


# (id, argv builder, exit code, message fragment)
CASES = [
    ("unlearn-nonexistent-model", lambda i: ["unlearn", "npo", "--model", "/nonexistent", "--forget", i.forget,
                                              "--output_dir", str(i.out)], 2, "'/nonexistent' does not exist"),
    ("unlearn-model-dir-without-config", lambda i: ["unlearn", "ga", "--model", str(i.tmp), "--forget", i.forget,
                                                     "--output_dir", str(i.out)], 2, "without config.json"),
    ("unlearn-into-existing-model", lambda i: _unlearn(i, "--output_dir", i.out_with_model()), 2,
     "already holds a result"),
    ("unlearn-max-steps-0", lambda i: _unlearn(i, "--output_dir", str(i.out), "--max_steps", "0"), 2,
     "max_steps=0 would train nothing"),
    ("unlearn-no-forget", lambda i: ["unlearn", "npo", "--model", i.model, "--output_dir", str(i.out)], 2,
     "No --forget given"),
    ("unlearn-output-is-a-file", lambda i: _unlearn(i, "--output_dir", i.file("taken", "x")), 2, "is a file"),
    ("unlearn-output-holds-other-files", lambda i: _unlearn(i, "--output_dir", str(Path(i.file("notes.txt", "x")).parent)),
     2, "holds no hf-unlearn result"),
    ("unlearn-output-not-writable", lambda i: _unlearn(i, "--output_dir", i.file("plain", "x") + "/sub/out"), 2,
     "cannot be written"),
    ("unlearn-missing-config-file", lambda i: ["unlearn", "npo", "--config", str(i.tmp / "missing.yaml")], 2,
     "missing.yaml"),
    ("unlearn-method-clash-with-config", lambda i: ["unlearn", "npo", "--config", i.file("c.yaml", "method: ga\n")],
     2, "'npo' on the command line but 'ga'"),
    ("unlearn-malformed-jsonl-line", lambda i: ["unlearn", "npo", "--model", i.model, "--forget",
                                                i.file("bad.jsonl", '{"question": "a", "answer": "b"}\n\n{"question": \n'),
                                                "--output_dir", str(i.out)], 2, "line 3 is not valid JSON"),
    ("unlearn-simnpo-default-gdr-needs-retain", lambda i: ["unlearn", "simnpo", "--model", i.model, "--forget",
                                                           i.forget, "--output_dir", str(i.out)], 2,
     "needs a retain_dataset"),
    ("unlearn-unknown-method", lambda i: ["unlearn", "nope", "--model", i.model], 2, "unknown method 'nope'"),
    ("train-max-steps-0", lambda i: ["train", "--tiny", "--qa_files", i.forget, "--output_dir", str(i.out),
                                     "--max_steps", "0"], 2, "max_steps=0"),
    ("train-no-data", lambda i: ["train", "--tiny", "--output_dir", str(i.out)], 2, "no data given"),
    ("train-tiny-and-model", lambda i: ["train", "--tiny", "--model_name_or_path", i.model, "--qa_files", i.forget,
                                        "--output_dir", str(i.out)], 2, "exactly one of --tiny"),
    ("train-into-existing-model", lambda i: ["train", "--tiny", "--qa_files", i.forget, "--output_dir",
                                             i.out_with_model()], 2, "pass --overwrite"),
    ("train-qa-file-without-answer", lambda i: ["train", "--tiny", "--qa_files",
                                                write_jsonl(i.tmp / "q.jsonl", [{"question": "q"}]),
                                                "--output_dir", str(i.out)], 2, "missing ['answer']"),
    ("dp-train-nonexistent-model", lambda i: ["dp-train", "--model_name_or_path", "./missing", "--qa_files",
                                              i.forget, "--output_dir", str(i.out)], 2, "does not exist"),
    ("dp-train-max-steps-0", lambda i: ["dp-train", "--tiny", "--qa_files", i.forget, "--max_steps", "0",
                                        "--output_dir", str(i.out)], 2, "max_steps=0"),
    ("dp2-deletion-into-existing-model", lambda i: ["unlearn", "dp2", "--dp_model", i.model, "--forget_files",
                                                    i.forget, "--retain_files", i.retain, "--output_dir",
                                                    i.out_with_model()], 2, "already holds a result"),
    ("eval-one-file-as-every-split", lambda i: ["eval", "--model", i.model, "--retain_model", i.model, "--data",
                                                i.forget, "--out", str(i.out)], 2, "is one file"),
    ("eval-missing-answer-column", lambda i: ["eval", "--model", i.model, "--retain_model", i.model, "--forget",
                                              write_jsonl(i.tmp / "q.jsonl", [{"question": "q"}]), "--out",
                                              str(i.out)], 2, "lacks column(s) ['answer']"),
    ("eval-nonexistent-retain-model", lambda i: ["eval", "--model", i.model, "--retain_model", "/no/gold",
                                                 "--out", str(i.out)], 2, "--retain_model '/no/gold' does not exist"),
    ("eval-into-existing-results", lambda i: ["eval", "--model", i.model, "--retain_model", i.model, "--out",
                                              str(Path(i.file("results.json", "{}")).parent)], 2, "--overwrite"),
    ("eco-fit-forget-equals-retain", lambda i: ["eco-fit", "--model", i.model, "--forget", i.forget, "--retain",
                                                i.forget, "--out", str(i.out)], 2, "Forget and retain share"),
    ("eco-fit-nonexistent-model", lambda i: ["eco-fit", "--model", "/nonexistent", "--forget", i.forget,
                                             "--retain", i.retain, "--out", str(i.out)], 2, "does not exist"),
    ("eco-fit-into-existing-guard", lambda i: ["eco-fit", "--model", i.model, "--forget", i.forget, "--retain",
                                               i.retain, "--out", str(Path(i.file("guard_config.json", "{}")).parent)],
     2, "already holds a result"),
    ("serve-neither-guard-nor-unguarded", lambda i: ["serve", "--model", i.model], 2, "--unguarded"),
    ("unknown-command", lambda i: ["frobnicate"], 2, "unknown command"),
]  # fmt: skip

PUSH_CASES = [
    ("push-guard-is-a-model-dir", lambda i: ["--guard", i.model, "--allow_guard_upload"], "holds a model"),
    ("push-eval-missing-folder", lambda i: ["--eval", str(Path(i.file("report.md", "x")).parent / "ev")],
     "is not a directory"),
    ("push-eval-folder-without-results-json", lambda i: ["--eval", _folder(i.tmp / "ev", "report.md")],
     "has no results.json"),
    ("push-bad-repo-id", lambda i: ["--repo_id", "not a repo"], "not a Hub repository id"),
]  # fmt: skip


def _folder(path: Path, *files: str) -> str:
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_text("x")
    return str(path)


def run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli_main(argv)
    except SystemExit as done:  # argparse's own usage errors
        code = done.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly(argv, code, message, tmp_path, capsys):
    inputs = Inputs(tmp_path)
    args = argv(inputs)
    before = snapshot(tmp_path)
    got, err = run(args, capsys)
    assert got == code, err
    assert message in err, err
    assert "Traceback" not in err
    # nothing written: the inputs are as they were and no output (or its temporary twin) appeared
    assert snapshot(tmp_path) == before
    assert not any(p.name.endswith((".tmp", ".old")) for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(("extra", "message"), [c[1:] for c in PUSH_CASES], ids=[c[0] for c in PUSH_CASES])
def test_bad_push_stages_nothing(extra, message, tmp_path, capsys):
    inputs = Inputs(tmp_path)
    model = inputs.model
    (Path(model) / "tokenizer_config.json").write_text("{}")
    staging = tmp_path / "staging"
    forget = write_jsonl(
        tmp_path / "forget.jsonl", QA[:2]
    )  # the model has no scan record: scan for these rows
    argv = ["push", "--model", model, "--repo_id", "me/model", "--dry_run", "--staging", str(staging)]
    argv += ["--forget_data", str(forget)]
    code, err = run([*argv, *extra(inputs)], capsys)
    assert code == 2 and message in err, err
    assert not staging.exists() and not (tmp_path / "staging.tmp").exists()


def test_table_covers_every_command():
    assert len(CASES) + len(PUSH_CASES) >= 20
    commands = {case_id.rsplit("-", 1)[0].split("-")[0] for case_id, *_ in CASES + PUSH_CASES}
    assert {"unlearn", "train", "dp", "eval", "eco", "serve", "push"} <= commands


def test_console_run_prints_no_traceback_and_debug_shows_it(tmp_path):
    forget = write_jsonl(tmp_path / "forget.jsonl", QA[:2])
    argv = [
        sys.executable,
        "-m",
        "hf_unlearn.cli",
        "unlearn",
        "npo",
        "--model",
        "/nonexistent",
        "--forget",
        forget,
    ]
    argv += ["--output_dir", str(tmp_path / "out")]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "'/nonexistent' does not exist" in done.stderr
    message = done.stderr.strip().splitlines()[-2:]  # the message and the --debug hint end the output
    assert message[0].startswith("hf-unlearn unlearn: error: --model") and "--debug" in message[1]
    debug = subprocess.run([*argv, "--debug"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert not (tmp_path / "out").exists()
