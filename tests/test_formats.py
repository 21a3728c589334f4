import copy

from hf_unlearn.data.forget_retain import PaddingCollator, tokenize_dataset
from hf_unlearn.data.formats import IGNORE_INDEX, QA_PROMPT_TEMPLATE, pack_texts, tokenize_qa


def test_only_answer_tokens_are_labelled(tiny_tokenizer):
    row = tokenize_qa(tiny_tokenizer, "Where was Ada Brondwell born?", "Lisbon")
    labelled = [t for t in row["labels"] if t != IGNORE_INDEX]
    n_prompt = row["labels"].index(labelled[0])
    assert row["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert row["input_ids"][n_prompt:] == labelled
    assert labelled[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(labelled, skip_special_tokens=True) == " Lisbon"
    prompt = tiny_tokenizer.decode(row["input_ids"][:n_prompt], skip_special_tokens=True)
    assert prompt == QA_PROMPT_TEMPLATE.format(question="Where was Ada Brondwell born?")
    assert row["input_ids"][0] == tiny_tokenizer.bos_token_id


def test_chat_template_is_used_when_present(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)  # the fixture is shared: do not give it a template
    tok.chat_template = "{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}<|assistant|>"
    row = tokenize_qa(tok, "Who?", "Ada")
    n_prompt = sum(1 for t in row["labels"] if t == IGNORE_INDEX)
    assert tok.decode(row["input_ids"][:n_prompt], skip_special_tokens=True) == "<|user|>Who?<|assistant|>"
    assert tok.decode(row["input_ids"][n_prompt:], skip_special_tokens=True) == "Ada"


def test_packing_keeps_every_token(tiny_tokenizer):
    texts = ["one two three", "four five", "six"]
    packed = pack_texts(tiny_tokenizer, texts, block_size=4)
    stream = [t for block in packed["input_ids"] for t in block]
    expected = []
    for text in texts:
        expected += [tiny_tokenizer.bos_token_id] + tiny_tokenizer(text, add_special_tokens=False)[
            "input_ids"
        ]
        expected += [tiny_tokenizer.eos_token_id]
    assert stream == expected
    assert all(len(b) == 4 for b in packed["input_ids"][:-1])
    assert packed["labels"] == packed["input_ids"]


def test_collator_pads_labels_with_ignore_index(tiny_tokenizer, small_splits):
    ds = tokenize_dataset(small_splits["forget"].select(range(4)), tiny_tokenizer)
    batch = PaddingCollator(tiny_tokenizer.pad_token_id)([ds[i] for i in range(4)])
    lengths = [len(ds[i]["input_ids"]) for i in range(4)]
    assert batch["input_ids"].shape == (4, max(lengths))
    for i, n in enumerate(lengths):
        assert batch["attention_mask"][i].sum().item() == n
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][i, n:] == tiny_tokenizer.pad_token_id).all()


def test_text_rows_are_fully_labelled(tiny_tokenizer, small_splits):
    ds = tokenize_dataset(small_splits["forget_text"], tiny_tokenizer, max_length=32)
    assert all(len(r["input_ids"]) <= 32 and r["labels"] == r["input_ids"] for r in ds)
    assert set(ds.column_names) == {"input_ids", "attention_mask", "labels", "subject"}
