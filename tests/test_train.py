import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_unlearn.cli.main import main as cli_main
from hf_unlearn.evaluation.qa import exact_match, generate_answers
from hf_unlearn.models import build_tiny_llama
from hf_unlearn.trainers.finetune import SUMMARY_FILE, TrainConfig, train_lm


def test_memorised_model_knows_trained_people_only(memorised_model_dir, small_splits):
    model = AutoModelForCausalLM.from_pretrained(memorised_model_dir)
    tok = AutoTokenizer.from_pretrained(memorised_model_dir)
    assert exact_match(model, tok, small_splits["forget"]) >= 0.9
    assert exact_match(model, tok, small_splits["retain"]) >= 0.9
    assert exact_match(model, tok, small_splits["holdout"]) <= 0.3
    # teacher-forced exact match agrees with what greedy generation says
    answers = generate_answers(model, tok, small_splits["forget"]["question"])
    agree = sum(a == b for a, b in zip(answers, small_splits["forget"]["answer"])) / len(answers)
    assert agree >= 0.9
    summary = json.loads((memorised_model_dir / SUMMARY_FILE).read_text())
    assert summary["monitor_exact_match"] >= 0.97 and summary["seconds"] > 0


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tiny_tokenizer, small_splits, tmp_path):
    def args(out, epochs):
        return TrainConfig(
            output_dir=str(out),
            seed=0,
            num_train_epochs=epochs,
            per_device_train_batch_size=4,
            target_exact_match=0,
            disable_tqdm=True,
            save_total_limit=2,
            lr_scheduler_type="constant_with_warmup",
        )  # the 2-epoch run is a prefix of the 4-epoch one

    qa, text = [small_splits["retain"]], [small_splits["retain_text"]]
    straight = train_lm(build_tiny_llama(tiny_tokenizer), tiny_tokenizer, args(tmp_path / "a", 4), qa, text)
    first = train_lm(build_tiny_llama(tiny_tokenizer), tiny_tokenizer, args(tmp_path / "b", 2), qa, text)
    assert (tmp_path / "b" / f"checkpoint-{first['steps']}").is_dir()
    # a differently initialised model: everything must come from the checkpoint
    resumed = train_lm(
        build_tiny_llama(tiny_tokenizer, seed=1),
        tiny_tokenizer,
        args(tmp_path / "b", 4),
        qa,
        text,
        resume_from_checkpoint="last",
    )
    assert resumed["steps"] == straight["steps"] == 2 * first["steps"]
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "a").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_train_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "model"
    code = cli_main(
        [
            "train",
            "--tiny",
            "--qa_files",
            "synthetic:forget",
            "--text_files",
            "synthetic:forget_text",
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "2",
            "--disable_tqdm",
            "true",
            "--vocab_size",
            "600",
        ]
    )
    assert code == 0
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["steps"] > 0 and summary["epochs"] == 2
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == len(tok) <= 600
    assert torch.isfinite(torch.tensor(summary["train_loss"]))
    assert "Saved model and tokenizer" in capsys.readouterr().out
