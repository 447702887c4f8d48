"""SwS weakness-driven problem synthesis (arXiv 2506.08989), installed as `rlkit.synth`.

One module per step, each a plain function over rows: weaknesses, concepts, budget, combinations,
problems, dedup, quality, answers, difficulty; `pipeline.run_pipeline` chains them with resumable
per-step logs; `report` prints the funnel. Prompt files a user edits live in `templates/`.
"""
