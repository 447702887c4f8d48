"""Prompt templates: how a problem becomes the chat messages given to the policy."""

from __future__ import annotations

TEMPLATES = {
    # The tiny world's policy is trained on the bare problem.
    "tiny": "{problem}",
    "plain": "{problem}",
    # Qwen2.5-Math evaluation's chain-of-thought template (also the 1-shot RLVR paper's).
    "qwen_boxed": "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
    # DeepSeek-R1 style: think first, then answer in a box.
    "r1_think": (
        "{problem}\nThink step by step inside <think> </think> tags, "
        "then give the final answer within \\boxed{{}}."
    ),
    # Qwen2.5-Math's own evaluation prompt ('qwen25-math-cot'): the instruction is the system message.
    "qwen25_math_cot": "{problem}",
    # The 1-shot RLVR / DeepScaleR training prompt (verl rows of pi1_r128.parquet end with this sentence).
    "deepscaler": "{problem} Let's think step by step and output the final answer within \\boxed{{}}.",
}

# Templates whose instruction goes in a system message before the user's problem.
SYSTEM_PROMPTS = {
    "qwen25_math_cot": "Please reason step by step, and put your final answer within \\boxed{}.",
}


def resolve_template(name: str, source: str) -> str:
    if name == "auto":
        return "tiny" if source.startswith("tiny:") else "qwen_boxed"
    if name not in TEMPLATES:
        raise KeyError(name)
    return name


def render_prompt(problem: str, template: str) -> list[dict[str, str]]:
    user = {"role": "user", "content": TEMPLATES[template].format(problem=problem)}
    return [{"role": "system", "content": SYSTEM_PROMPTS[template]}, user] if template in SYSTEM_PROMPTS else [user]
