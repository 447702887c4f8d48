"""An OpenAI-compatible server as a generation backend: `vllm serve` of a 70B teacher, or a hosted API.

Requests go out `concurrency` at a time (one per prompt, asking for its n samples). A connection error,
a timeout or a 408/409/429/5xx answer is retried after `backoff`, 2 x `backoff`, ... seconds, `retries`
times; a request that still fails (or gets a 4xx that retrying cannot fix) comes back as a Generation
with no texts and the reason, and the job goes on. The API key is read from the environment variable
that `api_key_env` names, at start-up, and is sent only in the Authorization header.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from rlkit.config import GeneratorConfig
from rlkit.errors import ConfigError
from rlkit.generation.base import Generation, Prompt, register_generator

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


@register_generator("openai")
class OpenAIServerGenerator:
    def __init__(self, config: GeneratorConfig):
        if not config.base_url:
            raise ConfigError("key 'generator.base_url': the openai backend needs the server's URL, e.g. http://localhost:8000/v1")
        if not config.model:
            raise ConfigError("key 'generator.model': the openai backend needs the model name the server serves")
        headers = {}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ConfigError(f"key 'generator.api_key_env': environment variable {config.api_key_env} is not set (it should hold the API key)")
            headers["Authorization"] = f"Bearer {key}"
        self.config = config
        self.client = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            headers=headers,
            timeout=config.timeout,
            limits=httpx.Limits(max_connections=config.concurrency),
        )

    def _body(self, prompt: Prompt, n: int, temperature: float, top_p: float, max_tokens: int,
              stop: Sequence[str] | None, seed: int) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.config.model, "n": n, "temperature": temperature, "top_p": top_p,
                                "max_tokens": max_tokens, "seed": seed}
        if stop:
            body["stop"] = list(stop)
        if self.config.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            return "/chat/completions", body
        if not isinstance(prompt, str):
            raise ValueError("the completions API takes text prompts; got chat messages (use generator.api: chat)")
        body["prompt"] = prompt
        return "/completions", body

    def _parse(self, payload: dict[str, Any], n: int) -> Generation:
        choices = sorted(payload.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            return Generation(error=f"server returned {len(choices)} choices, asked for {n}")
        if self.config.api == "chat":
            texts = [(c.get("message") or {}).get("content") or "" for c in choices]
        else:
            texts = [c.get("text") or "" for c in choices]
        return Generation(texts, [c.get("finish_reason") or "stop" for c in choices])

    def _request(self, prompt: Prompt, **sampling: Any) -> Generation:
        try:
            path, body = self._body(prompt, **sampling)
        except ValueError as err:
            return Generation(error=str(err))
        reason = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.post(path, json=body)
            except httpx.TransportError as err:  # connection refused or reset, timeouts
                reason = f"{type(err).__name__}: {err}"
                continue
            if response.status_code == 200:
                try:
                    return self._parse(response.json(), sampling["n"])
                except ValueError as err:
                    return Generation(error=f"unreadable response ({err}): {response.text[:200]!r}")
            reason = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in RETRYABLE_STATUS:
                break  # a bad request stays bad
        tries = attempt + 1
        return Generation(error=f"{reason} (after {tries} attempt{'s' if tries > 1 else ''})")

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] | None = None,
        seed: int = 0,
    ) -> list[Generation]:
        sampling = dict(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=stop, seed=seed)
        with ThreadPoolExecutor(self.config.concurrency) as pool:
            return list(pool.map(lambda prompt: self._request(prompt, **sampling), prompts))

    def close(self) -> None:
        self.client.close()
