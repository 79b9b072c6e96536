"""RAG with LangChain over examples/docs, offline on CPU: the packaged MiniLM embeddings retrieve a
document, a cachemux selector routes the question to a small (SmolLM2-135M) or large (Gemma-3-270M)
local model, and the semantic cache answers repeats and paraphrases.

    python examples/langchain_rag.py [--quick] [--predictor DIR] [--small NAME] [--large NAME]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import rag_common as rc  # sets HF_HUB_OFFLINE / OMP_WAIT_POLICY before torch loads


def build(args: Any) -> tuple[Any, Any]:
    from langchain_core.embeddings import Embeddings
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore

    from cachemux.semantic import Embedder
    from langchain_cachemux import CacheMuxCache, CacheMuxRouter, LocalChatModel

    class MiniLM(Embeddings):
        """LangChain embeddings over cachemux's embedder (the packaged all-MiniLM-L6-v2)."""

        def __init__(self) -> None:
            self.embedder = Embedder()

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return self.embedder.embed(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return self.embedder.embed([text])[0].tolist()

    docs = rc.load_documents()
    store = InMemoryVectorStore.from_texts([t for _, t in docs], MiniLM(),
                                           metadatas=[{"source": n} for n, _ in docs])

    def retrieve(question: str) -> str:
        return store.similarity_search(question, k=1)[0].page_content

    models = {
        # SmolLM2 has a chat template; Gemma-3-270M is a base model: one line of plain text
        "small": LocalChatModel(args.small, max_tokens=args.tokens, stop=["\n"]),
        "large": LocalChatModel(args.large, max_tokens=args.tokens, stop=["\n"]),
    }
    router = CacheMuxRouter(models, rc.make_selector(args.predictor, args.tokens, args.small, args.large), costs="flops",
                            cache=CacheMuxCache(), judge=rc.make_judge(retrieve))
    # system = the retrieved context (the cache's exact scope), human = the question (compared by
    # meaning): a paraphrase with the same context is a semantic hit, never across contexts
    prompt = ChatPromptTemplate.from_messages([("system", rc.SYSTEM), ("human", "{question}")])
    chain = ({"context": RunnableLambda(retrieve), "question": RunnablePassthrough()} | prompt | router)
    return chain, router


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = rc.parse_args(__doc__.splitlines()[0], argv)
    started = time.perf_counter()
    loads = rc.load_models((args.small, args.large))
    chain, router = build(args)
    rows = []
    for i, q in enumerate(rc.QUICK if args.quick else rc.QUESTIONS, 1):
        t0 = time.perf_counter()
        msg = chain.invoke(q)
        rows.append(rc.report_line(i, q, msg.content, msg.response_metadata["cachemux"], time.perf_counter() - t0,
                                   {"small": args.small, "large": args.large}))
    out = rc.summary(rows, router.stats(), started)
    out["load_seconds"] = loads
    out["rows"] = rows
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
