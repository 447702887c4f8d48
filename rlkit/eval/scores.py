"""Benchmark scores from per-sample verdicts: avg@k, pass@k (unbiased) and maj@k.

Every function takes, per problem, the list of its k sampled verdicts (and for maj@k the
extracted answers). They are pure functions so that they can be checked against hand-computed
numbers; the model, the engine and the reward play no part here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with `c` correct among `n` samples (Chen et al. 2021, Codex).

    pass@k = 1 - C(n-c, k) / C(n, k): the chance that k samples drawn without replacement from the
    n contain at least one correct one. Computed as a product to stay exact for large n.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def mean_pass_at_k(verdicts: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems; each problem's verdicts are its n >= k samples."""
    return sum(pass_at_k(len(v), sum(map(bool, v)), k) for v in verdicts) / len(verdicts)


def avg_at_k(verdicts: Sequence[Sequence[bool]]) -> float:
    """avg@k: the mean over problems of the fraction of each problem's k samples that are correct.

    The 1-shot RLVR paper's number for AIME/AMC (k = 8 at temperature 0.6). With k = 1 and greedy
    decoding it is plain accuracy.
    """
    return sum(sum(map(bool, v)) / len(v) for v in verdicts) / len(verdicts)


def majority_index(answers: Sequence[str | None], equivalent: Callable[[str, str], bool] | None = None) -> int | None:
    """Index of the sample whose answer wins the vote, or None when no sample gave an answer.

    Answers are grouped into classes of equivalent answers (`equivalent`, default string equality
    after stripping spaces); a sample with no answer (None) does not vote. The largest class wins.
    Tie rule: among equally large classes, the one whose first member was sampled earliest wins,
    and the returned index is that first member. The rule is deterministic and favours no answer
    over another, which keeps maj@k reproducible for a fixed set of samples.
    """
    same = equivalent or (lambda a, b: a.replace(" ", "") == b.replace(" ", ""))
    classes: list[list[int]] = []  # each: indices of equivalent answers, in sampling order
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        for members in classes:
            if same(answers[members[0]], answer):  # type: ignore[arg-type]
                members.append(index)
                break
        else:
            classes.append([index])
    if not classes:
        return None
    best = max(classes, key=lambda members: (len(members), -members[0]))
    return best[0]


def maj_at_k(
    answers: Sequence[Sequence[str | None]],
    verdicts: Sequence[Sequence[bool]],
    equivalent: Callable[[str, str], bool] | None = None,
) -> float:
    """maj@k: the fraction of problems whose majority answer (see `majority_index`) is correct.

    A problem with no extracted answer in any sample counts as wrong.
    """
    if len(answers) != len(verdicts):
        raise ValueError(f"maj_at_k: {len(answers)} answer lists but {len(verdicts)} verdict lists")
    correct = 0
    for problem_answers, problem_verdicts in zip(answers, verdicts):
        winner = majority_index(problem_answers, equivalent)
        correct += winner is not None and bool(problem_verdicts[winner])
    return correct / len(answers)


def pass_ks(n: int) -> list[int]:
    """The k reported for pass@k with n samples: powers of two below n, then n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]
