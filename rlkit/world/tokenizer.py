"""A character-level tokenizer with a Qwen-style chat template, saved in Hugging Face format.

Every byte is one token, in the byte-level alphabet that Qwen2's own tokenizer uses (BPE with no
merges), so ASCII text is one token per character. Why byte-level: a saved model directory whose
config says `qwen2` is loaded by `AutoTokenizer` (and vLLM) as `Qwen2Tokenizer`, which imposes its
byte-level pre-tokenizer and decoder; with this alphabet that yields exactly the same ids and text.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|unk|>"]
BYTE_TOKENS = sorted(ByteLevel.alphabet())  # 256 characters, one per byte
VOCAB_SIZE = 272  # model embedding rows: 4 special + 256 byte tokens, rounded up to a multiple of 16

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + BYTE_TOKENS)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|unk|>"))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|unk|>",
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 512
    return tokenizer
