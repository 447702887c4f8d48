"""synth/embeddings.py's hf_embedder on a real local model (the tiny world's, saved as a HF checkpoint)."""

from __future__ import annotations

import math

import pytest
import torch

from rlkit.synth.combinations import ConceptStats, next_concept_probabilities
from rlkit.synth.embeddings import hf_embedder
from rlkit.world.model import build_tiny_model, tiny_model_config
from rlkit.world.tokenizer import build_tiny_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-embedder")
    build_tiny_model(seed=3).save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)
    return path


def test_vectors_are_mean_pooled_last_hidden_states(model_dir):
    texts = ["borrow", "carry-hundreds", "three-operands", "borrow"]
    vectors = hf_embedder(str(model_dir))(texts)
    assert len(vectors) == 4 and all(len(v) == tiny_model_config().hidden_size for v in vectors)
    assert vectors[0] == pytest.approx(vectors[3], abs=1e-6)  # the same text, the same vector
    assert vectors[0] != pytest.approx(vectors[1], abs=1e-3)
    # by hand, one text at a time (no padding): the mean over its tokens of the last hidden state
    model = build_tiny_model(seed=3).model.eval()
    tokenizer = build_tiny_tokenizer()
    with torch.no_grad():
        for text, vector in zip(texts, vectors, strict=True):
            ids = tokenizer(text, return_tensors="pt")
            expected = model(**ids).last_hidden_state[0].mean(0)
            assert vector == pytest.approx(expected.tolist(), abs=1e-4), text


def test_padding_and_batching_do_not_change_a_vector(model_dir):
    # "borrow" is padded to the length of the longest text in its batch: the mask must keep the pad out
    # of the mean, and the padding side must leave the real tokens' positions alone
    alone = hf_embedder(str(model_dir))(["borrow"])[0]
    padded = hf_embedder(str(model_dir))(["borrow", "subtraction with a borrow from the tens column"])[0]
    assert padded == pytest.approx(alone, abs=1e-4)
    texts = ["addition", "carry-tens", "subtraction", "borrow", "multiplication"]
    assert hf_embedder(str(model_dir), batch_size=2)(texts) == [
        pytest.approx(v, abs=1e-4) for v in hf_embedder(str(model_dir), batch_size=64)(texts)
    ]


def test_embeddings_feed_concept_sampling(model_dir):
    # one vector per concept, where synth/combinations.py takes them: they move the probabilities away from
    # co-occurrence alone, which cannot tell the three concepts never seen with "addition" apart
    stats = ConceptStats([["subtraction", "borrow"], ["addition", "carry-tens"], ["addition", "three-operands"]])
    vectors = dict(zip(stats.concepts, hf_embedder(str(model_dir))(stats.concepts), strict=True))
    plain = next_concept_probabilities(stats, ["addition"], temperature=0.2)
    probs = next_concept_probabilities(stats, ["addition"], temperature=0.2, embeddings=vectors)
    assert plain["borrow"] == pytest.approx(plain["subtraction"])
    assert probs["borrow"] != pytest.approx(probs["subtraction"], rel=1e-3)
    assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-6) and "addition" not in probs
