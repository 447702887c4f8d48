"""The tiny world: a character tokenizer, a small Qwen2-shaped model and an arithmetic task.

It lets every part of rlkit run and be tested on a CPU in minutes, with no downloads.
"""
