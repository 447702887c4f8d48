"""The tiny world: a character tokenizer, a small Qwen2-shaped model, arithmetic problems in categories
(categories.py, arithmetic.py) and a fallible teacher (teacher.py).

It lets every part of rlkit run and be tested on a CPU in minutes, with no downloads.
"""
