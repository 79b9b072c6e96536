"""RAG with LlamaIndex over examples/docs, offline on CPU: a VectorStoreIndex on the packaged MiniLM
embeddings, and ``Settings.llm`` = a ``CacheMuxLLM`` that routes each question to a small
(SmolLM2-135M) or large (Gemma-3-270M) local model through the semantic cache.

    python examples/llamaindex_rag.py [--quick] [--predictor DIR] [--small NAME] [--large NAME]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import rag_common as rc  # sets HF_HUB_OFFLINE / OMP_WAIT_POLICY before torch loads


def build(args: Any) -> tuple[Any, Any]:
    from llama_index.core import Document, PromptTemplate, Settings, VectorStoreIndex

    from cachemux import SemanticCache
    from llamaindex_cachemux import CacheMuxLLM, LocalEmbedding, LocalLLM

    Settings.embed_model = LocalEmbedding()  # the packaged all-MiniLM-L6-v2, offline
    index = VectorStoreIndex.from_documents(
        [Document(text=text, metadata={"source": name}) for name, text in rc.load_documents()])
    retriever = index.as_retriever(similarity_top_k=1)

    def retrieve(question: str) -> str:
        return retriever.retrieve(question)[0].node.get_content()

    models = {  # one line each: Gemma-3-270M is a base model and would ramble on
        "small": LocalLLM(args.small, max_tokens=args.tokens, stop=["\n"]),
        "large": LocalLLM(args.large, max_tokens=args.tokens, stop=["\n"]),
    }
    llm = CacheMuxLLM(models, rc.make_selector(args.predictor, args.tokens, args.small, args.large), costs="flops",
                      cache=SemanticCache(),
                      judge=rc.make_judge(retrieve),
                      # the selector and the judge see the question, not the retrieved context
                      query_fn=lambda prompt: prompt.rsplit("Question:", 1)[-1].split("\n")[0].strip())
    Settings.llm = llm
    # query_fn finds the question in the prompt: the cache compares only it by meaning, with the
    # retrieved context as exact scope (a paraphrase with the same context is a semantic hit; a
    # different question about the same document is not)
    qa = PromptTemplate(rc.SYSTEM.replace("{context}", "{context_str}") + "\nQuestion: {query_str}\nAnswer:")
    engine = index.as_query_engine(similarity_top_k=1, text_qa_template=qa)
    return engine, llm


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = rc.parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    loads = rc.load_models((args.small, args.large))
    engine, llm = build(args)
    records = watch_llm_calls()
    rows = []
    for i, q in enumerate(rc.QUICK if args.quick else rc.QUESTIONS, 1):
        t0 = time.perf_counter()
        response = engine.query(q)
        rows.append(rc.report_line(i, q, str(response), records[-1], time.perf_counter() - t0,
                                   {"small": args.small, "large": args.large}))
    out = rc.summary(rows, llm.stats(), started)
    out["load_seconds"] = loads
    out["rows"] = rows
    return out


def watch_llm_calls() -> list[dict[str, Any]]:
    """Collect the routing record of every LLM call. A query engine's ``Response`` does not carry
    the LLM's response, so listen to LlamaIndex's instrumentation events for it."""
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent

    records: list[dict[str, Any]] = []

    class RoutingRecords(BaseEventHandler):
        def handle(self, event: Any, **kwargs: Any) -> None:
            if isinstance(event, (LLMCompletionEndEvent, LLMChatEndEvent)) and event.response is not None:
                meta = (event.response.additional_kwargs or {}).get("cachemux")
                if meta is not None:
                    records.append(meta)

    get_dispatcher().add_event_handler(RoutingRecords())
    return records


if __name__ == "__main__":
    main(sys.argv[1:])
