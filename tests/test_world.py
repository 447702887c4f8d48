"""The tiny world: tokenizer round trips, the teacher is right, splits are disjoint."""

from transformers import AutoTokenizer

from rlkit.rewards.math import math_reward
from rlkit.world.arithmetic import arithmetic_samples
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer


def test_tokenizer_round_trips_text_and_special_tokens(tmp_path):
    tok = build_tiny_tokenizer()
    text = "<think>\n12+30=42\n</think>\n\\boxed{42}"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.eos_token == "<|im_end|>"


def test_chat_template_ends_at_the_assistant_turn():
    tok = build_tiny_tokenizer()
    prompt = tok.apply_chat_template([{"role": "user", "content": "Compute 1+2."}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nCompute 1+2.<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")


def test_any_unicode_round_trips_as_bytes():
    tok = build_tiny_tokenizer()
    text = "é ∫ \t x"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode()) and tok.decode(ids) == text
    assert tok.unk_token_id not in ids


def test_a_saved_run_loads_with_autotokenizer_as_qwen2_with_the_same_ids(tmp_path):
    """AutoTokenizer picks Qwen2Tokenizer for a qwen2 model directory; it must tokenize as we do."""
    tok = build_tiny_tokenizer()
    build_tiny_model().save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    messages = [{"role": "user", "content": "Compute 18+58+26."}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + "<think>\n8+8+6=22\n"
    assert loaded(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert loaded.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_teacher_solutions_are_correct_and_splits_disjoint():
    train = arithmetic_samples("train", 300)
    test = arithmetic_samples("test", 100)
    assert not {s["problem"] for s in train} & {s["problem"] for s in test}
    for sample in train[:50] + test[:50]:
        assert math_reward(sample["solution"], sample).score == 1.0
        expr = sample["problem"].removeprefix("Compute ").removesuffix(".")
        assert eval(expr) == int(sample["answer"])  # noqa: S307 - our own generated arithmetic


def test_samples_are_deterministic():
    assert arithmetic_samples("test", 20) == arithmetic_samples("test", 20)


def test_tiny_model_has_vllm_compatible_head_dim():
    model = build_tiny_model()
    cfg = model.config
    assert cfg.hidden_size // cfg.num_attention_heads == 64
    assert cfg.vocab_size >= len(build_tiny_tokenizer())


def test_unboxed_fraction_changes_only_the_answer_format():
    plain = arithmetic_samples("train", 400)
    habit = arithmetic_samples("train", 400, unboxed_fraction=0.6)
    assert [s["problem"] for s in habit] == [s["problem"] for s in plain]  # the same problems
    unboxed = [s for s in habit if "\\boxed" not in s["solution"]]
    assert 0.52 < len(unboxed) / len(habit) < 0.68
    for sample in unboxed[:20]:
        assert sample["solution"].endswith(f"</think>\nThe answer is {sample['answer']}.")
        assert math_reward(sample["solution"], sample).score == 0.0  # the reward reads only the box
    boxed = {s["problem"]: s for s in habit if "\\boxed" in s["solution"]}
    assert all(s["solution"] == boxed[s["problem"]]["solution"] for s in plain if s["problem"] in boxed)
