"""SwS synthesis steps (synth/): each against hand-computed expectations, and bad backend text."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from rlkit.eval.evaluate import math_equivalence
from rlkit.generation.base import Generation
from rlkit.synth import answers, budget, combinations, concepts, dedup, difficulty, problems, quality, weaknesses
from rlkit.synth.asking import AskStats, Sampling, ask


# --------------------------------------------------------------------------- weaknesses
def test_slope_is_least_squares_over_epochs():
    # x = 0,1,2 (mean 1); y = .4,.3,.1 (mean .2667): cov = -1*.1333 + 1*-.1667 = -.3; var = 2
    assert weaknesses.accuracy_slope([0.4, 0.3, 0.1]) == pytest.approx(-0.15)
    assert weaknesses.accuracy_slope([0.2]) == 0.0


def test_weakness_is_the_authors_inclusive_rule():
    # the authors' released failure list (MasterVito/SwS record/failure_cases.jsonl) holds problems at 0 in
    # every epoch (slope exactly 0) and best epochs of exactly 0.5, none with a positive slope
    histories = {
        "falls-low": [0.4, 0.3, 0.1],  # weak
        "above-half": [0.5625, 0.1],  # above 0.5 once: not weak
        "reaches-half": [0.5, 0.25],  # best epoch exactly 0.5, falling: weak
        "rises": [0.1, 0.2],  # low but improving: not weak
        "flat": [0.2, 0.2],  # slope 0: weak
        "never-solved": [0.0, 0.0, 0.0],  # at 0 throughout: weak
        "one-epoch": [0.0],  # no slope from one epoch: not weak
        "falls-to-zero": [0.125, 0.0],  # weak
    }
    expected = ["falls-low", "reaches-half", "flat", "never-solved", "falls-to-zero"]
    assert weaknesses.find_weaknesses(histories) == expected
    assert weaknesses.find_weaknesses(histories, threshold=0.3, max_slope=-0.01) == ["falls-to-zero"]
    rows = [{"id": pid} for pid in histories]
    weak = weaknesses.weak_rows(rows, histories)
    assert [r["id"] for r in weak] == expected
    assert weak[-1]["accuracy_slope"] == pytest.approx(-0.125)


# --------------------------------------------------------------------------- budget
def test_failure_rates_and_budget_shares():
    rows = [{"id": f"a{i}", "category": "A"} for i in range(4)] + [{"id": f"b{i}", "category": "B"} for i in range(10)]
    rows += [{"id": f"c{i}", "category": "C"} for i in range(5)]
    rates = budget.failure_rates(rows, ["a0", "a1", "b3"])
    assert rates == {"A": 0.5, "B": 0.1, "C": 0.0}
    # 12 * .5/.6 = 10, 12 * .1/.6 = 2
    assert budget.allocate(rates, 12) == {"A": 10, "B": 2, "C": 0}
    # 10 * 5/6 = 8.33, 10 * 1/6 = 1.67: floors 8 + 1, the one left goes to the larger remainder (B)
    assert budget.allocate(rates, 10) == {"A": 8, "B": 2, "C": 0}
    assert budget.allocate({"A": 0.0}, 10) == {"A": 0}


# --------------------------------------------------------------------------- combinations
CONCEPT_LISTS = [["a", "b"], ["a", "b"], ["a", "b"], ["a", "c"]]  # count a4 b3 c1; together ab3 ac1 bc0


def test_next_concept_softmax_over_cooccurrence():
    stats = combinations.ConceptStats(CONCEPT_LISTS)
    probs = combinations.next_concept_probabilities(stats, ["a"], temperature=0.2)
    # scores b = 3/3 = 1, c = 1/3: p(b) = 1 / (1 + exp(-(1 - 1/3) / 0.2))
    assert probs["b"] == pytest.approx(1 / (1 + math.exp(-(2 / 3) / 0.2)))  # 0.9656
    assert set(probs) == {"b", "c"}


def test_next_concept_adds_cosine_to_the_chosen_mean():
    stats = combinations.ConceptStats(CONCEPT_LISTS)
    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 0.0]}
    probs = combinations.next_concept_probabilities(stats, ["a"], temperature=0.2, embeddings=vectors)
    # b = 1 + cos(b, a) = 1, c = 1/3 + 1 = 4/3: p(c) = 1 / (1 + exp(-(1/3) / 0.2))
    assert probs["c"] == pytest.approx(1 / (1 + math.exp(-(1 / 3) / 0.2)))  # 0.8411


def test_combination_sampling_statistics_under_a_fixed_seed():
    stats = combinations.ConceptStats(CONCEPT_LISTS)
    rng = random.Random(1234)
    draws = [combinations.sample_combination(stats, rng, size=2) for _ in range(4000)]
    firsts = Counter(d[0] for d in draws)
    # the first concept in proportion to its count: a 4/8, b 3/8, c 1/8
    for concept, expected in {"a": 0.5, "b": 0.375, "c": 0.125}.items():
        sigma = math.sqrt(expected * (1 - expected) / 4000)
        assert abs(firsts[concept] / 4000 - expected) < 4 * sigma, (concept, firsts)
    after_a = [d[1] for d in draws if d[0] == "a"]
    p_b = 1 / (1 + math.exp(-(2 / 3) / 0.2))
    sigma = math.sqrt(p_b * (1 - p_b) / len(after_a))
    assert abs(after_a.count("b") / len(after_a) - p_b) < 4 * sigma
    assert all(len(set(d)) == 2 for d in draws)


def test_combinations_follow_the_budget_and_seed():
    weak = [{"id": str(i), "category": "A", "concepts": c} for i, c in enumerate(CONCEPT_LISTS)]
    weak.append({"id": "x", "category": "B", "concepts": ["p", "q", "r", "s", "t", "u"]})
    combos = combinations.sample_combinations(weak, {"A": 3, "B": 2}, seed=7, size=5, levels=["AIME"])
    assert Counter(c["category"] for c in combos) == {"A": 3, "B": 2}
    assert all(len(c["concepts"]) == (3 if c["category"] == "A" else 5) for c in combos)  # A has only 3 concepts
    assert {c["level"] for c in combos} == {"AIME"}
    assert combos == combinations.sample_combinations(weak, {"A": 3, "B": 2}, seed=7, size=5, levels=["AIME"])


# --------------------------------------------------------------------------- parsing the model's text
def test_concepts_parse_as_a_list():
    text = "Here they are:\n- Vieta's formulas.\n2. quadratic equations\n* vieta's formulas\nnot an item"
    assert concepts.parse_concepts(text) == ["Vieta's formulas", "quadratic equations"]
    assert concepts.parse_concepts("no list at all") is None


def test_problem_parse_and_exclusions():
    parsed = problems.parse_problem("Rationale: combine A and B.\n\nProblem: Find $x$ if $2x = 6$.")
    assert parsed == {"rationale": "combine A and B.", "problem": "Find $x$ if $2x = 6$."}
    assert problems.parse_problem("Rationale: only thoughts") is None
    assert problems.exclusion_reason("What is 2+2? (A) 3 (B) 4 (C) 5") == "multiple-choice"
    assert problems.exclusion_reason("(a) Find x. (b) Find y.") == "multi-part"
    assert problems.exclusion_reason("Prove that there are infinitely many primes.") == "proof"
    assert problems.exclusion_reason("Find the area of a triangle with sides 3, 4 and 5.") is None


def test_rating_parse_and_the_keep_rule():
    assert quality.parse_rating("It is fine but wordy.\nRating: acceptable") == "acceptable"
    assert quality.parse_rating("Not perfect... Rating: **bad**") == "bad"
    assert quality.parse_rating("no verdict") is None
    assert quality.passes(["perfect", "acceptable"]) and quality.passes(["perfect", "perfect"])
    assert not quality.passes(["acceptable", "acceptable"]) and not quality.passes(["perfect", "bad"])


# --------------------------------------------------------------------------- answers: majority of 8
def test_majority_must_hold_half_of_all_samples():
    same = math_equivalence()
    assert answers.majority_answer(["3", "3", "3", "3", "4", "4", None, "5"], same) == ("3", 4)
    assert answers.majority_answer(["3", "3", "3", "4", "4", None, None, "5"], same) == (None, 3)
    assert answers.majority_answer([None] * 8, same) == (None, 0)


def test_majority_counts_answers_equal_under_math_verify_as_one():
    same = math_equivalence()
    votes = ["0.5", "\\frac{1}{2}", "1/2", "0.5", "2", "3", "4", "5"]
    assert answers.majority_answer(votes, same) == ("0.5", 4)


def test_final_answer_is_the_math_rewards_reading():
    assert answers.final_answer("<think>\\boxed{1}</think> so \\boxed{42}") == "42"
    assert answers.final_answer("<think>\\boxed{1}") is None
    assert answers.final_answer("no box") is None


# --------------------------------------------------------------------------- difficulty band
def test_band_includes_both_ends():
    assert [difficulty.in_band(a) for a in (0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0)] == [False, False, True, True, True, False, False]


# --------------------------------------------------------------------------- n-gram overlap
def test_ngrams_and_overlap():
    assert dedup.ngrams("a b c d", n=2) == {"a b", "b c", "c d"}
    assert dedup.ngrams("Compute 47+38.", n=13) == {"compute 47 + 38 ."}  # shorter than n: the whole text
    index = dedup.NgramIndex(n=2)
    index.add("a b c d", "train")
    assert index.overlap("a b c x") == (pytest.approx(2 / 3), "train")  # a b, b c found; c x not


def test_dedup_against_train_benchmarks_and_itself():
    rows = [{"id": str(i), "problem": p} for i, p in enumerate([
        "Find the sum of the roots of x^2 - 5x + 6 = 0.",  # a train problem, reworded at the end
        "How many primes are less than 20?",  # a benchmark problem
        "What is the product of the roots of x^2 + 7x + 12 = 0?",  # new
        "What is the product of the roots of x^2 + 7x + 12 = 0 ?",  # a duplicate of the one before
    ])]
    dropped: Counter[str] = Counter()
    kept = dedup.deduplicate(
        rows, ["Find the sum of the roots of x^2 - 5x + 6 = 0, please."],
        [("amc23", "How many primes are less than 20?")], n=4, threshold=0.5, dropped=dropped,
    )
    assert [r["id"] for r in kept] == ["2"]
    assert dropped == {"train": 1, "benchmark:amc23": 1, "synthetic": 1}


# --------------------------------------------------------------------------- bad backend text
class Scripted:
    """A Generator that replays given answers per call (a stand-in for a model, not for vLLM or HTTP)."""

    def __init__(self, *calls):
        self.calls, self.prompts = list(calls), []

    def generate(self, prompts, n=1, temperature=1.0, top_p=1.0, max_tokens=1024, stop=None, seed=0):
        self.prompts.append(list(prompts))
        reply = self.calls.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return [Generation(texts) if texts else Generation(error="HTTP 500") for texts in reply]


def test_unparseable_text_is_retried_then_counted_and_skipped():
    backend = Scripted([["- x"], ["gibberish"], ["nope"]], [["- y"], ["still nothing"]], [["again nothing"]])
    stats = AskStats()
    got = ask(backend, ["p0", "p1", "p2"], lambda t: concepts.parse_concepts(t[0]), Sampling(), stats, retries=2)
    assert got == [["x"], ["y"], None]
    assert backend.prompts == [["p0", "p1", "p2"], ["p1", "p2"], ["p2"]]  # only the unparsed are asked again
    assert stats.failed == {"unparseable": 1} and stats.retried == 3


def test_a_backend_that_is_down_is_counted_not_raised():
    backend = Scripted(ConnectionError("refused"), [["- y"], []], ConnectionError("refused"))
    stats = AskStats()
    got = ask(backend, ["p0", "p1"], lambda t: concepts.parse_concepts(t[0]), Sampling(), stats, retries=2)
    assert got == [["y"], None]
    assert stats.failed == {"request failed": 1}


def test_extract_concepts_drops_and_counts_what_never_parsed():
    backend = Scripted([["- carry"], ["???"]], [["???"]])
    stats = AskStats()
    rows = concepts.extract_concepts([{"id": "1", "problem": "p"}, {"id": "2", "problem": "q"}], backend, stats, retries=1)
    assert rows == [{"id": "1", "problem": "p", "concepts": ["carry"]}]
    assert stats.failed == {"unparseable": 1}
    assert "Problem:\np\n" in backend.prompts[0][0]  # the template file was filled in
