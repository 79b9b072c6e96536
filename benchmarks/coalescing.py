"""Model calls made by identical concurrent requests, per entry point (single flight).

In one process, 200 callers (threads started together, or asyncio tasks) ask the same prompt
once, through: the core ``SemanticCache`` (lookup, model, update), ``JointEngine.serve`` /
``aserve``, ``CacheMuxRouter.invoke`` / ``ainvoke``, ``CacheMuxLLM.complete`` / ``acomplete``
and LangChain's ``set_llm_cache(CacheMuxCache())`` path (``invoke`` / ``ainvoke`` of a chat
model). Across processes, 4 processes x 50 threads share one DiskStore or one Redis store (a
redis-server started here on a free port), with the store lease off and on (``lease=5``). Every
model call sleeps ``--work`` seconds (default 0.3) so that all callers arrive while it runs.

Runs against whichever cachemux is imported, so the same script measures the code before the
change (options it lacks are reported as n/a)::

    python benchmarks/coalescing.py                          # the installed cachemux
    PYTHONPATH=<shim with cachemux -> core/> python benchmarks/coalescing.py
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT, LLM = "What is the capital of France?", "fake-llm temperature=0"
WORK = 0.3


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.n += 1
        time.sleep(WORK)


def together(n: int, fn) -> None:
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        fn(i)

    with ThreadPoolExecutor(n) as ex:
        list(ex.map(run, range(n)))


def tasks(n: int, make) -> None:
    async def main() -> None:
        await asyncio.gather(*(make() for _ in range(n)))

    asyncio.run(main())


# ---- one process ---------------------------------------------------------------------------------
def core_cache(n: int) -> int:
    from cachemux import MemoryStore, SemanticCache

    cache, c = SemanticCache(MemoryStore(), semantic=False), Counter()

    def one(_: int) -> None:
        if cache.lookup(PROMPT, LLM) is None:
            c.hit()
            cache.update(PROMPT, LLM, "Paris.")

    together(n, one)
    return c.n


def engine(n: int, aio: bool) -> int:
    from cachemux import Generation, JointEngine, MemoryStore, Request, SemanticCache, StaticSelector

    c = Counter()

    def generate(req: Any, model: str) -> Any:
        c.hit()
        return Generation("Paris.", cost=1.0)

    eng = JointEngine(SemanticCache(MemoryStore(), semantic=False), StaticSelector(("m",)), generate)
    req = Request(PROMPT, PROMPT, "config")
    if aio:
        tasks(n, lambda: eng.aserve(req))
    else:
        together(n, lambda i: eng.serve(req))
    return c.n


def chat_model(c: Counter) -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class Counting(GenericFakeChatModel):
        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
            c.hit()
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="Paris."))])

    return Counting(messages=iter(()))


def router(n: int, aio: bool) -> int:
    from cachemux import MemoryStore, StaticSelector
    from langchain_cachemux import CacheMuxCache, CacheMuxRouter

    c = Counter()
    r = CacheMuxRouter({"m": chat_model(c)}, StaticSelector(("m",)), costs={"m": 1.0},
                       cache=CacheMuxCache(store=MemoryStore(), semantic=False))
    if aio:
        tasks(n, lambda: r.ainvoke(PROMPT))
    else:
        together(n, lambda i: r.invoke(PROMPT))
    return c.n


def llamaindex(n: int, aio: bool) -> int:
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.core.llms.custom import CustomLLM

    from cachemux import MemoryStore, SemanticCache, StaticSelector
    from llamaindex_cachemux import CacheMuxLLM

    c = Counter()

    class Counting(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="counting")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
            c.hit()
            return CompletionResponse(text="Paris.")

        def stream_complete(self, prompt: str, formatted: bool = False, **kw: Any) -> Any:
            raise NotImplementedError

    llm = CacheMuxLLM({"m": Counting()}, StaticSelector(("m",)), costs={"m": 1.0},
                      cache=SemanticCache(MemoryStore(), semantic=False))
    if aio:
        tasks(n, lambda: llm.acomplete(PROMPT))
    else:
        together(n, lambda i: llm.complete(PROMPT))
    return c.n


def set_llm_cache_path(n: int, aio: bool) -> int:
    from langchain_core.globals import get_llm_cache, set_llm_cache

    from cachemux import MemoryStore
    from langchain_cachemux import CacheMuxCache

    c = Counter()
    model, before = chat_model(c), get_llm_cache()
    set_llm_cache(CacheMuxCache(store=MemoryStore(), semantic=False))
    try:
        if aio:
            tasks(n, lambda: model.ainvoke(PROMPT))
        else:
            together(n, lambda i: model.invoke(PROMPT))
    finally:
        set_llm_cache(before)
    return c.n


# ---- across processes ----------------------------------------------------------------------------
def _process(backend: str, where: str, n: int, lease: float | None, barrier: Any, work: float) -> int:
    global WORK
    WORK = work
    from cachemux import DiskStore, RedisStore, SemanticCache

    store = DiskStore(where) if backend == "disk" else RedisStore(where)
    cache = SemanticCache(store, semantic=False, **({} if lease is None else {"lease": lease}))
    c = Counter()

    def one(_: int) -> None:
        if cache.lookup(PROMPT, LLM) is None:
            c.hit()
            cache.update(PROMPT, LLM, "Paris.")

    barrier.wait()
    together(n, one)
    cache.close()
    return c.n


def processes(backend: str, where: str, lease: float | None, procs: int = 4, n: int = 50) -> int:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(procs)
        with ctx.Pool(procs) as pool:
            return sum(pool.starmap(_process, [(backend, where, n, lease, barrier, WORK)] * procs))


def _redis() -> tuple[subprocess.Popen, str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    global WORK
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200, help="concurrent identical callers (one process)")
    ap.add_argument("--work", type=float, default=WORK, help="seconds per model call")
    args = ap.parse_args()
    WORK = args.work
    import cachemux
    from cachemux import SemanticCache

    has_lease = "lease" in inspect.signature(SemanticCache).parameters
    print(f"cachemux from {os.path.dirname(cachemux.__file__)}; {args.n} identical callers, "
          f"model call {WORK:g} s, python {sys.version.split()[0]}")
    rows: list[tuple[str, str]] = []

    def row(name: str, fn, *a: Any) -> None:
        t0 = time.perf_counter()
        calls = fn(*a)
        rows.append((name, f"{calls:>5}   ({time.perf_counter() - t0:5.2f} s)"))
        print(f"  {name:<50} {rows[-1][1]}", flush=True)

    row("SemanticCache lookup/update, threads", core_cache, args.n)
    row("JointEngine.serve, threads", engine, args.n, False)
    row("JointEngine.aserve, asyncio tasks", engine, args.n, True)
    row("CacheMuxRouter.invoke, threads", router, args.n, False)
    row("CacheMuxRouter.ainvoke, asyncio tasks", router, args.n, True)
    row("CacheMuxLLM.complete, threads", llamaindex, args.n, False)
    row("CacheMuxLLM.acomplete, asyncio tasks", llamaindex, args.n, True)
    row("set_llm_cache(CacheMuxCache) invoke, threads", set_llm_cache_path, args.n, False)
    row("set_llm_cache(CacheMuxCache) ainvoke, tasks", set_llm_cache_path, args.n, True)
    with tempfile.TemporaryDirectory() as tmp:
        for lease in (None, 5.0):
            name = f"4 processes x 50 threads, DiskStore, lease {'on' if lease else 'off'}"
            if lease and not has_lease:
                rows.append((name, "  n/a"))
                print(f"  {name:<50}   n/a", flush=True)
                continue
            where = os.path.join(tmp, f"disk-{lease}")
            from cachemux import DiskStore

            DiskStore(where).close()
            row(name, processes, "disk", where, lease)
    server = _redis()
    if server is None:
        print("  (no redis-server: Redis rows skipped)")
        return
    proc, url = server
    try:
        for i, lease in enumerate((None, 5.0)):
            name = f"4 processes x 50 threads, Redis, lease {'on' if lease else 'off'}"
            if lease and not has_lease:
                print(f"  {name:<50}   n/a", flush=True)
                continue
            row(name, processes, "redis", url.replace("/0", f"/{i}"), lease)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
