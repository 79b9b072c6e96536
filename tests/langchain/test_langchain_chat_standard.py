"""LangChain's standard chat-model suites (langchain-tests) for LocalChatModel and CacheMuxRouter.

What the models cannot do is declared through the suites' properties, as an integration package
does: no tool calling, structured output, JSON mode or non-text input for the local models (the
router over them inherits that). Standard parameters a local model has no use for (an API key,
a request timeout, retries) are left out of the unit suite's constructor arguments: both classes
refuse parameters they would not honour. Answers are kept short (``max_tokens``) so the
integration suites on SmolLM2-135M run in a few minutes on two CPU cores.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from cachemux import MemoryStore, OnlineSelector, StaticSelector
from langchain_cachemux import CacheMuxCache, CacheMuxRouter, LocalChatModel

TOKENS = 6  # short answers: each integration test generates a few of them


# The suites' async tests need pytest-asyncio, which runs in strict mode here (LangChain's own
# packages run it in auto mode): mark the classes; their sync tests ignore the mark.
asyncio_tests = [pytest.mark.asyncio,
                 pytest.mark.filterwarnings("ignore:.*marked with '@pytest.mark.asyncio' but it is not an async")]


class _NoFrills:
    """Declarations shared by the local model and the router over local models."""

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_image_urls(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_video_inputs(self) -> bool:
        return False

    @property
    def supports_image_tool_message(self) -> bool:
        return False

    @property
    def supports_pdf_tool_message(self) -> bool:
        return False

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # temperature, max_tokens and stop are honoured; api_key, timeout, max_retries are refused
        params = dict(super().standard_chat_model_params)  # type: ignore[misc]
        for p in ("api_key", "timeout", "max_retries"):
            params.pop(p, None)
        return params


# ---- LocalChatModel ------------------------------------------------------------------------------
class TestLocalChatModelUnit(_NoFrills, ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return LocalChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "smollm2-135m"}  # constructing loads nothing


@pytest.mark.models
class TestLocalChatModelIntegration(_NoFrills, ChatModelIntegrationTests):
    pytestmark = asyncio_tests
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return LocalChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "smollm2-135m", "max_tokens": TOKENS}

    @property
    def model_override_value(self) -> str:
        return "gemma3-270m"  # a call's model= runs the other packaged model

    @pytest.fixture(autouse=True)
    def _gemma_cached(self, request: Any) -> None:
        if "model_override" in request.node.name:
            from cachemux.models import get_model

            if not get_model("gemma3-270m").is_cached:
                pytest.skip("Gemma's fp32 cache is absent (first load ~80 s): python -m cachemux.models prepare")


# ---- CacheMuxRouter -------------------------------------------------------------------------------
class ToolFake(GenericFakeChatModel):
    """A fake chat model that can bind tools (so the router's tool path is exercised)."""

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="hi there"))])


class TestCacheMuxRouterUnit(ChatModelUnitTests):
    """Over fake models that support tools: the router binds tools when every model can."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return CacheMuxRouter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"models": {"small": ToolFake(messages=iter([])), "large": ToolFake(messages=iter([]))},
                "selector": OnlineSelector([("small", "large"), ("large",)]), "costs": {"small": 1.0, "large": 10.0}}

    @property
    def has_structured_output(self) -> bool:
        return False  # function calling only (json_schema / json_mode are not routed)

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        params = dict(super().standard_chat_model_params)
        for p in ("api_key", "timeout", "max_retries"):
            params.pop(p, None)
        return params


@pytest.mark.models
class TestCacheMuxRouterIntegration(_NoFrills, ChatModelIntegrationTests):
    """Over two local models (SmolLM2 short and shorter), with a real cache: repeats are hits."""

    pytestmark = asyncio_tests

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return CacheMuxRouter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"models": {"small": LocalChatModel("smollm2-135m", max_tokens=TOKENS - 2),
                           "large": LocalChatModel("smollm2-135m", max_tokens=TOKENS)},
                "selector": StaticSelector(("small", "large")), "costs": "flops",
                "cache": CacheMuxCache(store=MemoryStore(), semantic=False)}

    @property
    def supports_model_override(self) -> bool:
        return False  # the selector picks the model; a call's model= goes to the models as is
