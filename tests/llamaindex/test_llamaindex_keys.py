"""CacheMuxLLM's cache keys: the models' configuration and each call's options (max_tokens,
temperature, stop, ...) are part of the key, completions and chats apart, so an answer made under
other options is never served -- exactly or by meaning. Over the real MemoryStore and the real
packaged MiniLM embedder."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
from llama_index.core.base.llms.types import (  # noqa: E402
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402
from llama_index.core.llms.custom import CustomLLM  # noqa: E402

from cachemux import ConfigError, MemoryStore, OnlineSelector, SemanticCache, StaticSelector  # noqa: E402
from llamaindex_cachemux import CacheMuxLLM  # noqa: E402


class Echo(CustomLLM):
    """Answers with its prompt and the options it was called with, so a wrong hit shows."""

    style: str = "plain"
    api_key: str = "sk-do-not-store"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=f"echo-{self.style}")

    def _answer(self, prompt: str, kwargs: dict[str, Any]) -> str:
        return f"{self.style}|{prompt}|{json.dumps(kwargs, sort_keys=True, default=repr)}"

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._answer(prompt, kwargs))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._answer(prompt, kwargs)

        def gen():
            yield CompletionResponse(text=text, delta=text)
        return gen()


def router(cache: SemanticCache, **echo: Any) -> CacheMuxLLM:
    return CacheMuxLLM({"m": Echo(**echo)}, StaticSelector(("m",)), costs={"m": 1.0}, cache=cache)


@pytest.fixture
def cache() -> SemanticCache:
    return SemanticCache(MemoryStore(), threshold=0.95)  # semantic matching on, the real embedder


def served(r: Any) -> tuple[str, Any]:
    text = r.text if isinstance(r, CompletionResponse) else r.message.content
    return text, r.additional_kwargs["cachemux"]["cache_hit"]


@pytest.mark.parametrize("first, other", [
    ({"max_tokens": 5}, {"max_tokens": 6}),
    ({"temperature": 0.0}, {"temperature": 0.7}),
    ({"stop": ["\n"]}, {"stop": ["."]}),
    ({}, {"max_tokens": 5}),
])
def test_an_answer_made_with_other_options_is_never_served(cache, first, other):
    llm = router(cache)
    prompt = "Who designed the Eiffel Tower?"
    made, hit = served(llm.complete(prompt, **first))
    assert hit is False and json.dumps(first, sort_keys=True) in made
    text, hit = served(llm.complete(prompt, **other))
    assert hit is False and text != made and json.dumps(other, sort_keys=True) in text
    assert served(llm.complete(prompt, **first)) == (made, "exact")  # the same options: served
    # neither by meaning: a paraphrase is served only under the options it was made with
    para = "Who was the designer of the Eiffel Tower?"
    assert served(llm.complete(para, **first)) == (made, "semantic")
    text, hit = served(llm.complete(para, **{**other, "seed": 1}))
    assert hit is False and '"seed": 1' in text


def test_options_are_keyed_whatever_their_order_and_in_every_call_form(cache):
    llm = router(cache)
    made, _ = served(llm.complete("q", temperature=0.0, stop=["x"], max_tokens=3))
    assert served(llm.complete("q", max_tokens=3, stop=["x"], temperature=0.0)) == (made, "exact")
    chunks = list(llm.stream_complete("q", stop=["x"], max_tokens=3, temperature=0.0))
    assert [served(c) for c in chunks] == [(made, "exact")]
    fresh = list(llm.stream_complete("q", max_tokens=4))
    assert fresh[-1].additional_kwargs["cachemux"]["cache_hit"] is False and '"max_tokens": 4' in fresh[-1].text
    again = asyncio.run(llm.acomplete("q", max_tokens=4))
    assert served(again) == (fresh[-1].text, "exact")
    other = asyncio.run(llm.acomplete("q", max_tokens=5))
    assert served(other)[1] is False


def test_completions_and_chats_do_not_share_answers(cache):
    llm = router(cache)
    made, _ = served(llm.complete("hello there"))
    chat, hit = served(llm.chat([ChatMessage(role="user", content="hello there")]))
    assert hit is False and chat != made  # the chat's prompt is formatted by messages_to_prompt
    assert served(llm.chat([ChatMessage(role="user", content="hello there")])) == (chat, "exact")
    assert served(llm.chat([ChatMessage(role="user", content="hello there")], max_tokens=2))[1] is False


def test_the_models_configuration_is_part_of_the_key(cache):
    made, _ = served(router(cache, style="plain").complete("q"))
    # another router over an equally configured model shares the entry (the key is deterministic)...
    assert served(router(cache, style="plain").complete("q")) == (made, "exact")
    # ...one whose model is configured otherwise does not
    text, hit = served(router(cache, style="shouting").complete("q"))
    assert hit is False and text.startswith("shouting|")
    # LlamaIndex's MockLLM: the same prompt under another max_tokens is another answer
    mocks = [CacheMuxLLM({"m": MockLLM(max_tokens=n)}, StaticSelector(("m",)), costs={"m": 1.0}, cache=cache)
             for n in (2, 3)]
    assert served(mocks[0].complete("p")) == ("text text", False)
    assert served(mocks[1].complete("p")) == ("text text text", False)
    assert served(mocks[0].complete("p")) == ("text text", "exact")


def test_secret_fields_stay_out_of_the_stored_key(cache):
    router(cache).complete("q")
    (key,) = list(cache.store.keys())
    entry = cache.store.peek(key)
    assert '"style":"plain"' in entry.meta["llm"]  # the key holds the model's configuration...
    assert "sk-do-not-store" not in entry.to_json()  # ...but not its credentials


def test_unkeyable_option_values_never_match_wrongly(cache):
    llm = router(cache)

    class Opaque:  # no stable form: keyed by its repr (an address), so never served to another
        pass

    a, b = Opaque(), Opaque()
    assert served(llm.complete("q", tool=a))[1] is False
    assert served(llm.complete("q", tool=b))[1] is False


def test_entry_priced_above_zero_under_the_online_selector(cache):
    """The joint design: an entry is priced at what a miss costs under the multiplexer -- before
    the other route is tried, the observed cost, never the optimistic 0 of an untried route."""
    llm = CacheMuxLLM({"small": Echo(style="small"), "large": Echo(style="large")},
                      OnlineSelector([("small", "large"), ("large",)]),
                      costs={"small": 1.0, "large": 10.0}, cache=cache)
    metas = [llm.complete("Which planet is the largest?").additional_kwargs["cachemux"] for _ in range(3)]
    first = metas[0]
    assert first["route"] == ["small", "large"] and first["models_run"] == ["small"]
    assert first["entry_cost"] == first["cost"] == 1.0
    assert all(m["entry_cost"] > 0 for m in metas if not m["cache_hit"])
    # cached once its price is known (at the latest after the selector tried the other route)
    assert metas[-1]["cache_hit"] == "exact" and metas[-1]["saved"] > 0 and metas[-1]["cost"] == 0.0


def test_bad_cache_is_a_config_error():
    with pytest.raises(ConfigError, match="cache must be"):
        CacheMuxLLM({"m": Echo()}, StaticSelector(("m",)), costs={"m": 1.0}, cache={"not": "a cache"})
