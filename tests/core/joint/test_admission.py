"""Only answers that succeeded are cached: an answer the judge rejected (served, since the route
ends with it), an empty one, a model call that raised and a stream that raised or was abandoned
are never admitted, so a repeat or a rewording runs the model again. Through the engine with a
real SemanticCache (the packaged embedder for the rewordings), the LangChain router and cache and
the LlamaIndex LLM."""

from __future__ import annotations

import pytest

from cachemux import MemoryStore, SemanticCache, StaticSelector
from cachemux.joint import Generation, JointEngine, Request
from cachemux.joint.answers import empty_answer

ONE = StaticSelector(("m",))
CASCADE = StaticSelector(("small", "large"))
Q = "What is the boiling point of water at sea level in Celsius?"
REWORDINGS = ["what is the boiling point of water at sea level in celsius",
              "What's the boiling point of water at sea level, in Celsius?",
              "At sea level, what is the boiling point of water in Celsius?"]


class Model:
    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.calls = answers, []

    def __call__(self, request: Request, model: str) -> Generation:
        self.calls.append((request.prompt, model))
        return Generation(self.answers[model], cost=1.0, text=self.answers[model])


def request(prompt: str = Q) -> Request:
    return Request(prompt, prompt=prompt, config="cfg")


def test_an_answer_the_judge_rejected_is_served_but_never_cached():
    cache = SemanticCache(MemoryStore(), semantic=False)
    model = Model({"small": "I do not know", "large": "I do not know either"})
    eng = JointEngine(cache, CASCADE, model, judge=lambda q, m, text: False)
    first = eng.serve(request())
    assert first.answer == "I do not know either" and first.admitted is False
    assert not eng.serve(request()).hit  # a repeat runs the models again
    assert len(model.calls) == 4 and len(cache.store) == 0
    assert eng.stats()["refused"] == {"failed": 2, "empty": 0}
    # an accepted answer is cached as before
    ok = JointEngine(cache, CASCADE, model, judge=lambda q, m, text: m == "large")
    assert ok.serve(request()).admitted and ok.serve(request()).hit


def test_a_generation_that_reports_failure_is_not_cached():
    cache = SemanticCache(MemoryStore(), semantic=False)
    eng = JointEngine(cache, ONE, lambda r, m: Generation("partial", cost=1.0, success=False))
    assert eng.serve(request()).admitted is False and not eng.serve(request()).hit


@pytest.mark.parametrize("blank", ["", "   \n\t", None])
def test_an_empty_answer_is_not_cached_unless_asked(blank):
    cache = SemanticCache(MemoryStore(), semantic=False)
    eng = JointEngine(cache, ONE, lambda r, m: Generation(blank, cost=1.0))
    assert eng.serve(request()).admitted is False and not eng.serve(request()).hit
    assert eng.stats()["refused"]["empty"] == 2
    if blank is not None:  # None is never a value a SemanticCache can keep
        keep = JointEngine(SemanticCache(MemoryStore(), semantic=False), ONE,
                           lambda r, m: Generation(blank, cost=1.0), admit_empty=True)
        assert keep.serve(request()).admitted and keep.serve(request()).hit


def test_empty_answer_reads_text_content_and_tool_calls():
    class Msg:
        def __init__(self, content, tool_calls=()):
            self.content, self.tool_calls = content, list(tool_calls)

    assert empty_answer("") and empty_answer(" ") and empty_answer(None) and not empty_answer("0")
    assert empty_answer(Msg("")) and not empty_answer(Msg("", [{"name": "f", "args": {}}]))
    assert not empty_answer(Msg([{"type": "image"}]))  # content blocks are not judged by text
    assert not empty_answer(("role", ""))  # no text form: not judged
    assert empty_answer(Msg("ignored"), text="")  # the generation's text decides when given


def test_a_failed_answer_is_not_served_to_rewordings():
    """The probe: an empty answer, once cached, was served to 7 of 7 rewordings."""
    cache = SemanticCache(MemoryStore())
    calls = []

    def generate(r: Request, m: str) -> Generation:
        calls.append(r.prompt)
        return Generation("", cost=1.0)

    eng = JointEngine(cache, ONE, generate)
    eng.serve(request())
    for text in REWORDINGS:
        assert not eng.serve(request(text)).hit
    assert len(calls) == 1 + len(REWORDINGS)


def test_a_model_that_raises_or_a_broken_stream_caches_nothing():
    cache = SemanticCache(MemoryStore(), semantic=False)

    def boom(r, m):
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        JointEngine(cache, ONE, boom).serve(request())

    class Port:
        def generate(self, r, m):
            return Generation("whole answer", cost=1.0)

        def stream(self, r, m):
            yield "whole "
            raise RuntimeError("connection reset")

    with pytest.raises(RuntimeError):
        list(JointEngine(cache, ONE, Port()).stream(request()))
    assert len(cache.store) == 0


def test_an_abandoned_stream_caches_nothing():
    cache = SemanticCache(MemoryStore(), semantic=False)

    class Port:
        def generate(self, r, m):
            return Generation("whole answer", cost=1.0)

        def stream(self, r, m):
            yield "whole "
            yield "answer"
            yield Generation("whole answer", cost=1.0)

    it = JointEngine(cache, ONE, Port()).stream(request())
    next(it)
    it.close()  # the consumer stopped after the first chunk
    assert len(cache.store) == 0
    done = list(JointEngine(cache, ONE, Port()).stream(request()))
    assert done[-1].admitted and len(cache.store) == 1


def test_langchain_router_and_cache_never_cache_a_blank_answer():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.outputs import ChatGeneration, Generation as LCGeneration
    from langchain_core.messages import AIMessage

    from langchain_cachemux import CacheMuxCache, CacheMuxRouter

    model = FakeListChatModel(responses=[""] * 10)
    cache = CacheMuxCache(store=MemoryStore(), semantic=False)
    router = CacheMuxRouter({"m": model}, ONE, costs={"m": 1.0}, cache=cache)
    router.invoke(Q)
    router.invoke(Q)
    assert model.i == 2 and router.stats()["hits"] == 0 and router.stats()["refused"]["empty"] == 2

    direct = CacheMuxCache(store=MemoryStore(), semantic=False)
    direct.update(Q, "llm", [LCGeneration(text="")])
    direct.update(Q, "chat", [ChatGeneration(message=AIMessage(content=""))])
    assert direct.lookup(Q, "llm") is None and direct.lookup(Q, "chat") is None
    assert direct.stats()["empty"] == 2
    tool = AIMessage(content="", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "1"}])
    direct.update(Q, "chat", [ChatGeneration(message=tool)])  # a tool call is an answer
    assert direct.lookup(Q, "chat")[0].message.tool_calls[0]["name"] == "f"
    keep = CacheMuxCache(store=MemoryStore(), semantic=False, admit_empty=True)
    keep.update(Q, "llm", [LCGeneration(text="")])
    assert keep.lookup(Q, "llm")[0].text == ""


def test_llamaindex_llm_never_caches_a_rejected_answer():
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.llms.custom import CustomLLM

    from llamaindex_cachemux import CacheMuxLLM

    class Fake(CustomLLM):
        calls: int = 0

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="fake")

        def complete(self, prompt, formatted=False, **kw):
            self.calls += 1
            return CompletionResponse(text="not sure")

        def stream_complete(self, prompt, formatted=False, **kw):
            raise NotImplementedError

    fake = Fake()
    llm = CacheMuxLLM({"m": fake}, ONE, costs={"m": 1.0}, cache=SemanticCache(MemoryStore(), semantic=False),
                      judge=lambda q, m, t: False)
    assert llm.complete(Q).text == "not sure" and llm.complete(Q).text == "not sure"
    assert fake.calls == 2 and llm.stats()["refused"]["failed"] == 2
