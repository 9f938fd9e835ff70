"""The sidecar's OpenAI door, driven by the real OpenAI Python SDK and LangChain.

Run by `cargo xtask openai-sdk`, which starts the simulator and the sidecar and sets
ROUTER_URL (the sidecar's /v1 base), ROUTER_KEY (a caller key) and ROUTER_ROUTES (the
configured routes, comma-separated). Each check asserts what a client relies on; the
first failure ends the run with a non-zero exit.
"""

import asyncio
import os
import sys

import openai
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI, OpenAI

BASE = os.environ["ROUTER_URL"]
KEY = os.environ["ROUTER_KEY"]
ROUTES = sorted(os.environ["ROUTER_ROUTES"].split(","))
client = OpenAI(base_url=BASE, api_key=KEY, max_retries=0)
passed = []


def check(name):
    def run(f):
        f()
        passed.append(name)
        print(f"ok   {name}")
        return f

    return run


@check("create: an answer with its model, finish reason and usage")
def _():
    answer = client.chat.completions.create(
        model=ROUTES[0],
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Summarize this transcript"},
        ],
        user="conv-7f3a",
    )
    assert answer.object == "chat.completion", answer
    assert answer.model, answer
    choice = answer.choices[0]
    assert choice.finish_reason == "stop", choice
    assert choice.message.role == "assistant" and choice.message.content, choice
    assert answer.usage.total_tokens == (
        answer.usage.prompt_tokens + answer.usage.completion_tokens
    ), answer.usage
    # The same sticky key reaches the same model.
    again = client.chat.completions.create(
        model=ROUTES[0], messages=[{"role": "user", "content": "x"}], user="conv-7f3a"
    )
    assert again.model == answer.model, (again.model, answer.model)


@check("raw response: the router's headers and a request id")
def _():
    raw = client.chat.completions.with_raw_response.create(
        model=ROUTES[0], messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-genesys-router-route"] == ROUTES[0], raw.headers
    assert raw.headers["x-genesys-router-model"] == raw.parse().model, raw.headers
    assert raw.headers.get("x-request-id"), raw.headers


@check("stream: content, then a finish reason, then usage when asked")
def _():
    chunks = list(
        client.chat.completions.create(
            model=ROUTES[0],
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text, chunks
    assert reasons[-1] == "stop", reasons
    assert chunks[-1].usage is not None and chunks[-1].choices == [], chunks[-1]
    assert len({c.id for c in chunks}) == 1, "one id for every chunk"


@check("models: list and retrieve name the configured routes")
def _():
    assert sorted(m.id for m in client.models.list()) == ROUTES
    assert client.models.retrieve(ROUTES[0]).id == ROUTES[0]


def refused(kind, status, param, **call):
    try:
        client.chat.completions.create(**call)
    except kind as e:
        assert e.status_code == status, (e.status_code, e.body)
        assert e.body["param"] == param, e.body
        assert e.body["message"] and e.body["type"] and e.body["code"], e.body
        return e
    raise AssertionError(f"{call} was not refused")


@check("errors: typed exceptions naming the parameter")
def _():
    hi = [{"role": "user", "content": "hi"}]
    e = refused(openai.NotFoundError, 404, "model", model="no-such-route", messages=hi)
    assert e.body["code"] == "model_not_found", e.body
    refused(openai.BadRequestError, 400, "temperature", model=ROUTES[0], messages=hi,
            temperature=2.5)
    refused(openai.BadRequestError, 400, "n", model=ROUTES[0], messages=hi, n=2)
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    refused(openai.BadRequestError, 400, "tools", model=ROUTES[0], messages=hi,
            tools=[tool])
    refused(openai.BadRequestError, 400, "messages", model=ROUTES[0], messages=[])


@check("responses: create, with instructions and an earlier turn sent back")
def _():
    answer = client.responses.create(
        model=ROUTES[0],
        instructions="Be brief.",
        input=[
            {"role": "user", "content": "Where is my parcel?"},
            {"role": "assistant", "content": "Which order?"},
            {"role": "user", "content": [{"type": "input_text", "text": "#42"}]},
        ],
        user="conv-7f3a",
    )
    assert answer.object == "response" and answer.status == "completed", answer
    assert answer.instructions == "Be brief.", answer.instructions
    assert answer.output_text, answer
    assert answer.usage.total_tokens == (
        answer.usage.input_tokens + answer.usage.output_tokens
    ), answer.usage


@check("responses: the answer passes the SDK's validating model (every required field), not only its lenient parse")
def _():
    from openai.types.responses import Response

    raw = client.responses.with_raw_response.create(model=ROUTES[0], input="hi")
    Response.model_validate(raw.http_response.json(), strict=False)


@check("responses: the stream helper's events and final response")
def _():
    with client.responses.stream(model=ROUTES[0], input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed", final
    assert "".join(deltas) == final.output_text, (deltas, final.output_text)


@check("responses: what the gateway cannot do is refused by name")
def _():
    tool = {"type": "function", "name": "f", "parameters": {}}
    for param, call in [
        ("tools", dict(tools=[tool])),
        ("previous_response_id", dict(previous_response_id="resp_1")),
        ("store", dict(store=True)),
    ]:
        try:
            client.responses.create(model=ROUTES[0], input="hi", **call)
        except openai.BadRequestError as e:
            assert e.body["param"] == param, e.body
        else:
            raise AssertionError(f"{param} was not refused")


@check("auth: a wrong key is an AuthenticationError")
def _():
    stranger = OpenAI(base_url=BASE, api_key="not-a-key", max_retries=0)
    try:
        stranger.models.list()
    except openai.AuthenticationError as e:
        assert e.status_code == 401, e
    else:
        raise AssertionError("a wrong key was let in")


@check("async: 50 concurrent calls and a stream")
def _():
    async def run():
        client = AsyncOpenAI(base_url=BASE, api_key=KEY, max_retries=0)
        answers = await asyncio.gather(
            *[
                client.chat.completions.create(
                    model=ROUTES[i % len(ROUTES)],
                    messages=[{"role": "user", "content": f"prompt {i}"}],
                )
                for i in range(50)
            ]
        )
        assert len({a.id for a in answers}) == 50, "one id per completion"
        stream = await client.chat.completions.create(
            model=ROUTES[0], messages=[{"role": "user", "content": "hi"}], stream=True
        )
        reasons = [c.choices[0].finish_reason async for c in stream if c.choices]
        assert reasons[-1] == "stop", reasons
        await client.close()

    asyncio.run(run())


@check("langchain: invoke and stream through ChatOpenAI, by both APIs")
def _():
    llm = ChatOpenAI(base_url=BASE, api_key=KEY, model=ROUTES[0], max_retries=0)
    answer = llm.invoke("Summarize this transcript")
    assert answer.content, answer
    assert answer.response_metadata["model_name"], answer.response_metadata
    assert answer.usage_metadata["total_tokens"] > 0, answer.usage_metadata
    assert "".join(c.content for c in llm.stream("hi")), "a stream with content"
    # The same through the Responses API, whose answers are lists of content blocks.
    llm = ChatOpenAI(base_url=BASE, api_key=KEY, model=ROUTES[0], max_retries=0,
                     use_responses_api=True)
    answer = llm.invoke([("system", "Be brief."), ("user", "Summarize this transcript")])
    assert answer.text, answer
    assert answer.usage_metadata["total_tokens"] > 0, answer.usage_metadata
    assert "".join(c.text for c in llm.stream("hi")), "a Responses stream with content"


print(f"{len(passed)} checks passed (openai {openai.__version__})")
sys.exit(0)
