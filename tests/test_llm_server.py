"""The test LLM server, driven by MetaGPT's real OpenAI provider over HTTP.

These tests also pin down how MetaGPT 0.8.2 + openai behave on failures, because the
runtime's error handling depends on it:

* the openai SDK retries HTTP 408/409/429/5xx and timeouts itself (``max_retries=2``,
  i.e. 3 requests), honouring ``retry-after-ms``;
* ``OpenAILLM.acompletion_text`` retries only ``APIConnectionError`` (which includes
  ``APITimeoutError``) with tenacity: 6 attempts, random exponential waits of 1..60 s;
  HTTP status errors and malformed bodies are not retried there;
* ``ActionNode._aask_v1`` retries *any* exception: 6 attempts, waits of 1..20 s.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.llm_server import LlmServer, count_words, prompt_tokens

if TYPE_CHECKING:
    from metagpt.context import Context


@pytest.fixture
def server(metagpt_root: Path) -> Iterator[LlmServer]:
    with LlmServer() as s:
        yield s


@pytest.fixture
def stream_log() -> Iterator[list[str]]:
    """Capture what MetaGPT streams through ``log_llm_stream`` (a process-global hook)."""
    import metagpt.logs as mlogs

    pieces: list[str] = []
    original = mlogs._llm_stream_log
    mlogs.set_llm_stream_logfunc(pieces.append)
    yield pieces
    mlogs.set_llm_stream_logfunc(original)


def make_context(server: LlmServer, **llm: Any) -> Context:
    from metagpt.config2 import Config
    from metagpt.context import Context

    config = {"api_type": "openai", "model": "gpt-4o-mini", "base_url": server.base_url, "api_key": "sk-test"}
    config.update(llm)
    return Context(config=Config.from_llm_config(config))


def expected_cost(model: str, prompt: int, completion: int) -> float:
    from metagpt.utils.token_counter import TOKEN_COSTS

    price = TOKEN_COSTS[model]
    return (prompt * price["prompt"] + completion * price["completion"]) / 1000


@pytest.fixture
def fast_metagpt_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep MetaGPT's tenacity retry counts but drop their waits (seconds to minutes)."""
    from metagpt.actions.action_node import ActionNode
    from metagpt.provider.openai_api import OpenAILLM
    from tenacity import wait_none

    # The decorators keep their Retrying object on `.retry`; each call copies it, so patching it works.
    monkeypatch.setattr(OpenAILLM.acompletion_text.retry, "wait", wait_none())
    monkeypatch.setattr(ActionNode._aask_v1.retry, "wait", wait_none())


def test_models_endpoint(server: LlmServer) -> None:
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as rsp:
        payload = json.load(rsp)
    assert [m["id"] for m in payload["data"]] == ["gpt-4o-mini"]
    assert server.requests[-1].path == "/v1/models"


@pytest.mark.asyncio
async def test_aask_non_streaming_records_usage(server: LlmServer) -> None:
    ctx = make_context(server)
    answer = await ctx.llm().aask("Say hello in plain words.", stream=False)

    assert answer == "This is a short plain answer from the test LLM server."
    [body] = server.chat_bodies
    assert not body.get("stream")
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"][-1] == {"role": "user", "content": "Say hello in plain words."}
    costs = ctx.cost_manager.get_costs()
    assert costs.total_prompt_tokens == prompt_tokens(body)
    assert costs.total_completion_tokens == count_words(answer)
    assert costs.total_cost == pytest.approx(expected_cost("gpt-4o-mini", prompt_tokens(body), count_words(answer)))


@pytest.mark.asyncio
async def test_aask_streaming_uses_final_usage_chunk_and_stream_hook(server: LlmServer, stream_log: list[str]) -> None:
    ctx = make_context(server)
    answer = await ctx.llm().aask("Write some python code please.")  # config.stream defaults to True

    assert answer.startswith("```python\n") and answer.endswith("```")
    [body] = server.chat_bodies
    assert body["stream"] is True
    # One hook call per SSE chunk (role chunk, words, finish, usage), then a newline.
    assert "".join(stream_log) == answer + "\n"
    assert len(stream_log) > count_words(answer)
    costs = ctx.cost_manager.get_costs()
    assert (costs.total_prompt_tokens, costs.total_completion_tokens) == (prompt_tokens(body), count_words(answer))


@pytest.mark.asyncio
async def test_format_example_block_is_echoed(server: LlmServer) -> None:
    prompt = (
        '## context\nsomething\n[CONTENT]{"old": 1}[/CONTENT]\n-----\n\n## format example\n'
        '[CONTENT]\n{"Project Name": "game_2048"}\n[/CONTENT]\n\n## constraint\n...'
    )
    answer = await make_context(server).llm().aask(prompt)
    assert answer == '[CONTENT]\n{"Project Name": "game_2048"}\n[/CONTENT]'


@pytest.mark.asyncio
async def test_custom_responder_and_action_node(server: LlmServer) -> None:
    from metagpt.actions.action_node import ActionNode

    server.responder = lambda body: '[CONTENT]\n{"Answer": "forty-two"}\n[/CONTENT]'
    ctx = make_context(server)
    node = ActionNode(key="Answer", expected_type=str, instruction="the answer", example="x")
    filled = await node.fill(context="What is the answer?", llm=ctx.llm())
    assert filled.instruct_content.model_dump() == {"Answer": "forty-two"}
    assert "## format example" in server.chat_bodies[0]["messages"][-1]["content"]


@pytest.mark.asyncio
async def test_http_500_is_retried_by_sdk_only_then_raised(server: LlmServer) -> None:
    import openai

    server.fail(times=None)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        await make_context(server).llm().aask("hello")
    # 1 request + the openai SDK's 2 retries; MetaGPT's own retry ignores status errors.
    assert len(server.chat_requests) == 3
    assert [r.headers.get("x-stainless-retry-count") for r in server.chat_requests] == ["0", "1", "2"]
    assert time.monotonic() - started < 5  # retry-after-ms: 1 keeps the SDK's backoff short


@pytest.mark.asyncio
async def test_single_500_is_absorbed_by_sdk_retry(server: LlmServer) -> None:
    server.fail(times=1)
    answer = await make_context(server).llm().aask("hello", stream=False)
    assert answer == "This is a short plain answer from the test LLM server."
    assert len(server.chat_requests) == 2


@pytest.mark.asyncio
async def test_500_without_sdk_retry(server: LlmServer) -> None:
    import openai

    server.fail(times=None, should_retry=False, status=503)
    with pytest.raises(openai.InternalServerError):
        await make_context(server).llm().aask("hello")
    assert len(server.chat_requests) == 1


@pytest.mark.asyncio
async def test_action_node_retries_any_error_six_times(server: LlmServer, fast_metagpt_retries: None) -> None:
    import openai
    from metagpt.actions.action_node import ActionNode
    from tenacity import RetryError

    server.fail(times=None, should_retry=False)
    node = ActionNode(key="Answer", expected_type=str, instruction="the answer", example="x")
    with pytest.raises(RetryError) as info:
        await node.fill(context="What is the answer?", llm=make_context(server).llm())
    # _aask_v1's retry has no reraise, so callers get tenacity's RetryError wrapping the last error.
    assert isinstance(info.value.last_attempt.exception(), openai.InternalServerError)
    assert len(server.chat_requests) == 6


@pytest.mark.asyncio
async def test_stall_times_out_and_metagpt_retries_timeouts(
    server: LlmServer, fast_metagpt_retries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openai
    from metagpt.provider.openai_api import OpenAILLM
    from tenacity import stop_after_attempt

    server.stall(times=None)
    monkeypatch.setattr(OpenAILLM.acompletion_text.retry, "stop", stop_after_attempt(2))
    llm = make_context(server, timeout=1).llm()
    # LLMConfig has no retry setting: the SDK's own retries are only reachable on the client.
    llm.aclient = llm.aclient.with_options(max_retries=0)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await llm.aask("hello")
    elapsed = time.monotonic() - started
    assert len(server.chat_requests) == 2  # APITimeoutError is an APIConnectionError: MetaGPT retries it
    assert 2 <= elapsed < 4


@pytest.mark.asyncio
async def test_delayed_answer_within_timeout(server: LlmServer) -> None:
    server.delay(0.3)
    started = time.monotonic()
    answer = await make_context(server, timeout=5).llm().aask("hello", stream=False)
    assert answer.startswith("This is a short plain answer")
    assert time.monotonic() - started >= 0.3


@pytest.mark.asyncio
async def test_slow_stream_outlives_timeout(server: LlmServer, stream_log: list[str]) -> None:
    # The timeout bounds each socket read, not the whole answer: a model that keeps
    # trickling tokens is never cut off by LLMConfig.timeout.
    server.responder = lambda body: " ".join(f"w{i}" for i in range(15))
    server.token_delay = 0.1
    started = time.monotonic()
    answer = await make_context(server, timeout=1).llm().aask("hello")
    assert answer == " ".join(f"w{i}" for i in range(15))
    assert time.monotonic() - started >= 1.5
    assert len(server.chat_requests) == 1
    assert "".join(stream_log) == answer + "\n"


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_garbage_body_raises_without_retry(server: LlmServer, stream: bool) -> None:
    server.garbage(times=None)
    with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK's parser
        await make_context(server).llm().aask("hello", stream=stream)
    assert len(server.chat_requests) == 1


@pytest.mark.asyncio
async def test_faults_queue_in_order(server: LlmServer) -> None:
    import openai

    server.fail(times=1, should_retry=False)
    server.garbage(times=1)
    llm = make_context(server).llm()
    with pytest.raises(openai.InternalServerError):
        await llm.aask("one")
    with pytest.raises(ValueError):
        await llm.aask("two")
    assert await llm.aask("three") == "This is a short plain answer from the test LLM server."
