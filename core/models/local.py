"""A local transformers model: lazy thread-safe loading (GGUF or any model name/path), greedy or
sampled generation with measured latency and counted FLOPs."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cachemux.models.threads import configure_torch, passive_waits

passive_waits()  # before anything here can import torch (it reads the policy once, at load)

from cachemux.errors import ConfigError, UnknownNameError  # noqa: E402
from cachemux.models.flops import FlopsProfile  # noqa: E402
from cachemux.models.packaged import PACKAGED, file_fingerprint, model_cache_root  # noqa: E402

__all__ = ["GenerationResult", "GenerationStream", "LocalModel", "Message", "get_model"]

log = logging.getLogger(__name__)

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
Prompt = str | Sequence[Message]

_COSTS = ("latency", "flops", "tokens")


@dataclass(frozen=True)
class GenerationResult:
    """One generation: the text and what it cost.

    ``latency``: wall-clock seconds from prompt formatting to decoded text (what a user waits).
    ``flops``: forward FLOPs counted from the model config (``FlopsProfile.generation``).
    ``tokens_out`` counts every generated token, the end-of-sequence one included (it cost a
    forward pass). ``finish_reason``: "stop" (end of sequence or a stop string) or "length".
    """

    text: str
    model: str
    latency: float
    flops: float
    tokens_in: int
    tokens_out: int
    finish_reason: str

    @property
    def seconds_per_token(self) -> float:
        return self.latency / self.tokens_out if self.tokens_out else 0.0

    def cost(self, unit: str = "latency") -> float:
        """The cost in ``unit``: "latency" (seconds), "flops", or "tokens" (in + out)."""
        if unit == "latency":
            return self.latency
        if unit == "flops":
            return self.flops
        if unit == "tokens":
            return float(self.tokens_in + self.tokens_out)
        raise ConfigError(f"unknown cost unit {unit!r}; valid choices: {', '.join(_COSTS)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LocalModel:
    """A causal language model run locally through transformers.

    ``model`` is a packaged name (``"smollm2-135m"``, ``"gemma3-270m"``, ``"qwen2.5-coder-0.5b"``,
    ``"qwen2.5-coder-1.5b"``: see ``cachemux.models.PACKAGED``), a hub name or a local directory
    (``"Qwen/Qwen2.5-1.5B-Instruct"``, loaded with ``from_pretrained`` as usual, so offline only
    if it is in the local hub cache), or a ``.gguf`` file / a directory with ``gguf_file=``. GGUF
    weights are de-quantised on first load (slow: tens of seconds to 3 minutes), then saved as fp32
    safetensors under ``cache_dir`` (default ``model_cache_root()``), from where later loads take
    about a second.

    ``dtype``: None = fp32 on CPU (fp16/bf16 on CUDA). ``"bfloat16"`` halves the RAM (the 1.5B:
    3.6 instead of 6.1 GB) but on a CPU without native bf16 prefill is 4-5x slower.

    A name that is none of these (not packaged, no such path, not in the local hub cache, and
    not an ``org/model`` hub id that could be fetched) is refused at once with the known names.

    Prompts go through the tokenizer's chat template when it has one (``chat=None``, the
    default; ``True`` requires one, ``False`` never uses it), else they are used as plain text.
    Generation is greedy unless ``temperature > 0`` (then sampled; ``seed`` makes it
    reproducible). One generation runs at a time per model (a lock): concurrent callers queue,
    so each measured latency is the model's own, not a share of the CPU.
    """

    def __init__(self, model: str | os.PathLike[str], *, gguf_file: str | None = None,
                 name: str | None = None, device: str = "auto", dtype: Any = None,
                 chat: bool | None = None, system_prompt: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, save_fp32: bool = True,
                 max_input_tokens: int | None = None) -> None:
        self.source = str(model)
        self.gguf_file = gguf_file
        self.packaged = PACKAGED.get(self.source) if gguf_file is None else None
        if self.packaged is None and gguf_file is None:
            _check_source(self.source)
        if self.packaged is None and gguf_file is None and self.source.endswith(".gguf"):
            p = Path(self.source).expanduser()
            self.source, self.gguf_file = str(p.parent), p.name
        self.name = name or (self.packaged.name if self.packaged else
                             Path(self.gguf_file).stem if self.gguf_file else self.source)
        if device not in ("auto", "cpu") and not device.startswith(("cuda", "mps")):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda[:n]' or 'mps', got {device!r}")
        self._device_arg = device
        self._dtype_arg = dtype
        self.chat = chat
        self.system_prompt = system_prompt
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.save_fp32 = save_fp32
        self.max_input_tokens = max_input_tokens
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self.flops_profile: FlopsProfile | None = None
        self.load_seconds: float | None = None
        self.loaded_from: str | None = None  # "gguf" | "fp32-cache" | "pretrained"
        self.device: str | None = None

    def __repr__(self) -> str:
        state = f"loaded from {self.loaded_from} in {self.load_seconds:.1f}s" if self.loaded else "not loaded"
        return f"LocalModel({self.name!r}, {state})"

    @property
    def identity(self) -> dict[str, Any]:
        """What decides this model's answers (for cache keys): weights, prompt format, dtype."""
        return {"name": self.name, "source": self.source, "gguf_file": self.gguf_file, "chat": self.chat,
                "system_prompt": self.system_prompt, "max_input_tokens": self.max_input_tokens,
                "dtype": str(self._dtype_arg)}

    # ---- loading --------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self._tokenizer

    @property
    def uses_chat_template(self) -> bool:
        has = bool(getattr(self.tokenizer, "chat_template", None))
        return has if self.chat is None else self.chat

    def load(self) -> LocalModel:
        """Load once (thread-safe); later calls return at once."""
        if self._model is not None:
            return self
        with self._load_lock:
            if self._model is None:
                self._load()
        return self

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        configure_torch()

        device = self._device_arg
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self._dtype_arg
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        if dtype is None:
            dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) \
                if device.startswith("cuda") else torch.float32
        t0 = time.perf_counter()
        cached = self.fp32_cache
        if cached is not None and (cached / "cachemux.json").is_file():  # written last: complete
            gguf_dir = gguf_name = None
        else:
            gguf_dir, gguf_name, _ = self._gguf_location()
        if cached is None:
            tok = AutoTokenizer.from_pretrained(self.source)
            model = AutoModelForCausalLM.from_pretrained(self.source, dtype=dtype)
            self.loaded_from = "pretrained"
        else:
            if gguf_name is None:
                tok = AutoTokenizer.from_pretrained(cached)
                model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
                self.loaded_from = "fp32-cache"
            else:
                log.info("de-quantising %s (first load; the fp32 copy goes to %s)", gguf_name, cached)
                tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
                model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name)
                # save_pretrained refuses a GGUF-quantised model; the weights are plain fp32 now
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                self.loaded_from = "gguf"
                if self.save_fp32:
                    self._save_cache(model, tok, cached, gguf_name, time.perf_counter() - t0)
                if dtype != torch.float32:
                    model = model.to(dtype)
        model.to(device)
        model.eval()
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        try:
            profile = FlopsProfile.from_config(model.config)
        except ConfigError:
            profile = FlopsProfile.from_model(model)
        self._tokenizer, self.flops_profile, self.device = tok, profile, device
        self.load_seconds = time.perf_counter() - t0
        self._model = model  # last: ``loaded`` turns true only when everything is set
        log.info("loaded %s from %s in %.1fs", self.name, self.loaded_from, self.load_seconds)

    @property
    def fp32_cache(self) -> Path | None:
        """Where this model's de-quantised copy lives (or will), None for non-GGUF models."""
        if self.packaged is not None:  # no need to locate (assemble) the GGUF for its key
            return (self.cache_dir or model_cache_root()) / self.packaged.cache_key
        _, gguf_name, key = self._gguf_location()
        return None if gguf_name is None else (self.cache_dir or model_cache_root()) / key

    @property
    def is_cached(self) -> bool:
        """True if loading will read the fp32 cache (fast) rather than de-quantise (slow)."""
        path = self.fp32_cache
        return path is not None and (path / "cachemux.json").is_file()

    def _gguf_location(self) -> tuple[str | None, str | None, str]:
        if self.packaged is not None:
            path = self.packaged.locate()
            return str(path.parent), path.name, self.packaged.cache_key
        if self.gguf_file is None:
            return None, None, ""
        path = Path(self.source).expanduser() / self.gguf_file
        if path.is_file():
            return str(path.parent), path.name, f"{path.stem}-{file_fingerprint(path)}"
        # a hub repo id holding the GGUF (offline only if it is in the local hub cache)
        safe = self.source.replace("/", "--")
        return self.source, self.gguf_file, f"{safe}--{Path(self.gguf_file).stem}"

    def _save_cache(self, model: Any, tok: Any, target: Path, gguf_name: str, seconds: float) -> None:
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            unsafe = [p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pkl", ".pth")]
            if unsafe:
                raise ConfigError(f"refusing a pickled model cache in {tmp}: {unsafe}")
            (tmp / "cachemux.json").write_text(json.dumps(
                {"name": self.name, "gguf_file": gguf_name, "dequantise_seconds": round(seconds, 2)}))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, target)  # atomic; another process may have won the race
            except OSError:
                if not (target / "cachemux.json").is_file():
                    raise
        except Exception as exc:  # a cache that cannot be written only costs the next load time
            log.warning("could not save the fp32 cache of %s to %s: %s", self.name, target, exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- prompts --------------------------------------------------------------------------
    def format_prompt(self, prompt: Prompt) -> str:
        """The exact text fed to the tokenizer (chat template applied when used)."""
        tok = self.tokenizer
        if isinstance(prompt, str):
            messages: list[dict[str, str]] = [{"role": "user", "content": prompt}]
        else:
            messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
            if not messages:
                raise ConfigError("an empty message list has nothing to answer")
        if self.uses_chat_template:
            if not getattr(tok, "chat_template", None):
                raise ConfigError(f"{self.name} has no chat template; use chat=None or False")
            if self.system_prompt and messages[0]["role"] != "system":
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if isinstance(prompt, str):
            return (self.system_prompt + "\n\n" + prompt) if self.system_prompt else prompt
        return _plain_transcript(messages, self.system_prompt)

    def _encode(self, prompt: Prompt) -> dict[str, Any]:
        tok = self.tokenizer
        text = self.format_prompt(prompt)
        # a chat template writes its own special tokens; plain text gets the tokenizer's BOS
        enc = tok(text, return_tensors="pt", add_special_tokens=not self.uses_chat_template)
        if self.max_input_tokens and enc["input_ids"].shape[1] > self.max_input_tokens:
            enc = {k: v[:, -self.max_input_tokens:] for k, v in enc.items()}  # keep the end
        return {k: v.to(self.device) for k, v in enc.items()}

    def _generation_config(self, max_new_tokens: int, stop: Sequence[str] | None,
                           temperature: float = 0.0) -> Any:
        from transformers import GenerationConfig

        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        t = check_temperature(temperature)
        # plain temperature sampling: no top-k/top-p cut the caller did not ask for
        sampling = {"do_sample": True, "temperature": t, "top_k": 0, "top_p": 1.0} if t > 0 else {"do_sample": False}
        return GenerationConfig(max_new_tokens=max_new_tokens, **sampling,
                                eos_token_id=self._eos_ids(), pad_token_id=self.tokenizer.pad_token_id,
                                stop_strings=list(stop) if stop else None)

    def _seeded(self, seed: int | None) -> Any:
        """Sampling from ``seed`` without touching the process's random state afterwards."""
        if seed is None:
            return contextlib.nullcontext()
        import torch

        devices = [torch.device(self.device).index or 0] if str(self.device).startswith("cuda") else []
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(seed)
        return stack

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    # ---- generation -----------------------------------------------------------------------
    def generate(self, prompt: Prompt, max_new_tokens: int = 64, stop: Sequence[str] | None = None, *,
                 temperature: float = 0.0, seed: int | None = None) -> GenerationResult:
        """Generate from ``prompt`` (a string or a list of chat messages): greedy at
        ``temperature=0``, else sampled (``seed``: reproducibly)."""
        import torch

        self.load()
        stop = _check_stop(stop)
        gc = self._generation_config(max_new_tokens, stop, temperature)
        seed = check_seed(seed)
        with self._gen_lock:
            t0 = time.perf_counter()
            enc = self._encode(prompt)
            with torch.inference_mode(), self._seeded(seed):
                out = self._model.generate(**enc, generation_config=gc,
                                           tokenizer=self._tokenizer if stop else None)
            n_in = int(enc["input_ids"].shape[1])
            new = out[0, n_in:].tolist()
            text = self._tokenizer.decode(new, skip_special_tokens=True)
            latency = time.perf_counter() - t0
        return self._result(text, new, n_in, latency, stop)

    def stream(self, prompt: Prompt, max_new_tokens: int = 64, stop: Sequence[str] | None = None, *,
               temperature: float = 0.0, seed: int | None = None) -> GenerationStream:
        """``generate`` yielding text pieces as they are decoded (see ``GenerationStream``)."""
        self.load()
        stop = _check_stop(stop)
        return GenerationStream(self, prompt, self._generation_config(max_new_tokens, stop, temperature), stop,
                                check_seed(seed))

    def _result(self, text: str, new_ids: list[int], n_in: int, latency: float,
                stop: Sequence[str] | None) -> GenerationResult:
        cut = _cut_at_stop(text, stop)
        ended = bool(new_ids) and new_ids[-1] in self._eos_ids()
        n_out = len(new_ids)
        assert self.flops_profile is not None
        return GenerationResult(text=cut, model=self.name, latency=latency,
                                flops=self.flops_profile.generation(n_in, n_out), tokens_in=n_in,
                                tokens_out=n_out,
                                finish_reason="stop" if ended or len(cut) < len(text) else "length")

    def info(self) -> dict[str, Any]:
        """What the model is and what it costs (loads it)."""
        self.load()
        assert self.flops_profile is not None
        return {"name": self.name, "source": self.source, "gguf_file": self.gguf_file,
                "loaded_from": self.loaded_from, "load_seconds": self.load_seconds,
                "device": self.device, "dtype": str(self._model.dtype).replace("torch.", ""),
                "parameters": int(sum(p.numel() for p in self._model.parameters())),
                "chat_template": self.uses_chat_template,
                "flops_per_token": self.flops_profile.per_token, "flops": self.flops_profile.as_dict()}


class GenerationStream:
    """Iterate over the text of a generation as it is produced; ``result`` once it is done.

    Generation runs in a background thread (transformers' ``TextIteratorStreamer``); stop
    strings are held back until they can no longer match, so no stop text is ever yielded.
    ``close()`` (or leaving a ``with`` block) stops the generation early.
    """

    def __init__(self, model: LocalModel, prompt: Prompt, gc: Any, stop: Sequence[str] | None,
                 seed: int | None = None) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        self._lm = model
        self._stop = stop
        self._seed = seed
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._new: list[int] = []
        self._n_in = 0
        self.result: GenerationResult | None = None
        self.text = ""
        cancel = self._cancel

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                import torch

                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        self._streamer = TextIteratorStreamer(model.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._gc = gc
        self._criteria = StoppingCriteriaList([_Cancel()])
        self._prompt = prompt
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=f"generate-{model.name}", daemon=True)
        self._thread.start()
        self._iter = self._pieces()

    def _run(self) -> None:
        import torch

        lm = self._lm
        try:
            with lm._gen_lock:
                self._t0 = time.perf_counter()
                enc = lm._encode(self._prompt)
                self._n_in = int(enc["input_ids"].shape[1])
                with torch.inference_mode(), lm._seeded(self._seed):
                    out = lm._model.generate(**enc, generation_config=self._gc, streamer=self._streamer,
                                             stopping_criteria=self._criteria,
                                             tokenizer=lm._tokenizer if self._stop else None)
                self._new = out[0, self._n_in:].tolist()
        except BaseException as exc:  # surfaced to the consumer by _pieces
            self._error = exc
            self._streamer.end()

    def _pieces(self) -> Generator[str, None, None]:
        stop = self._stop
        hold = max((len(s) for s in stop), default=1) - 1 if stop else 0
        buf, sent = "", 0
        done = False
        for piece in self._streamer:
            buf += piece
            cut = _cut_at_stop(buf, stop)
            if len(cut) < len(buf):  # a stop string appeared: emit up to it, end the generation
                buf, done = cut, True
                self._cancel.set()
            upto = len(buf) if done else max(sent, len(buf) - hold)
            if upto > sent:
                yield buf[sent:upto]
                sent = upto
            if done:
                break
        if done:
            for _ in self._streamer:  # drain after an early stop so the thread can finish
                pass
        self._thread.join()
        if self._error is not None:
            raise self._error
        if len(buf) > sent:
            yield buf[sent:]
        latency = time.perf_counter() - self._t0
        self.result = self._lm._result(self._lm.tokenizer.decode(self._new, skip_special_tokens=True),
                                       self._new, self._n_in, latency, stop)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        piece = next(self._iter)
        self.text += piece
        return piece

    def close(self) -> None:
        self._cancel.set()
        self._iter.close()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self) -> GenerationResult:
        """Consume the rest and return the result."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result


def check_temperature(temperature: object) -> float:
    """A finite temperature >= 0 (0: greedy), else ConfigError."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not (0 <= temperature < math.inf):
        raise ConfigError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    return float(temperature)


def check_seed(seed: object) -> int | None:
    """None or an int >= 0, else ConfigError."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"seed must be None or an int >= 0, got {seed!r}")
    return seed


def _check_source(source: str) -> None:
    """Refuse a model name that cannot be loaded, now rather than as a hub error at first use."""
    if Path(source).expanduser().exists():
        return
    offline = True
    try:
        from huggingface_hub import constants, try_to_load_from_cache

        offline = bool(constants.HF_HUB_OFFLINE)
        if isinstance(try_to_load_from_cache(source, "config.json"), str):
            return  # in the local hub cache
    except Exception:  # not a valid repo id at all (HFValidationError), or no hub library
        pass
    else:
        # a hub id that could still be fetched: only 'org/model' names, only when online
        if not offline and source.count("/") == 1 and not source.startswith((".", "/", "~")):
            return
    err = UnknownNameError("model", source, PACKAGED)
    where = "in the local hub cache (HF_HUB_OFFLINE is set)" if offline else "('org/model')"
    err.args = (f"unknown model {source!r}; known: {sorted(PACKAGED)} (packaged), or an existing directory "
                f"or .gguf file, or a hub model {where}",)
    raise err


def _check_stop(stop: Sequence[str] | None) -> tuple[str, ...] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = (stop,)
    stop = tuple(stop)
    if not all(isinstance(s, str) and s for s in stop):
        raise ConfigError(f"stop must be non-empty strings, got {stop!r}")
    return stop or None


def _cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    if not stop:
        return text
    idx = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[:min(idx)] if idx else text


def _plain_transcript(messages: Sequence[Mapping[str, str]], system: str | None) -> str:
    """Chat messages as plain text for a base model without a chat template."""
    lines = []
    if system and messages[0]["role"] != "system":
        lines.append(system)
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    if len(messages) == 1 and messages[0]["role"] == "user":
        return "\n\n".join([*lines, messages[0]["content"]])
    for m in messages:
        if m["role"] == "system":
            lines.append(m["content"])
        else:
            lines.append(f"{names.get(m['role'], m['role'].title())}: {m['content']}")
    lines.append("Assistant:")
    return "\n".join(lines)


_SHARED: dict[tuple[Any, ...], LocalModel] = {}
_SHARED_LOCK = threading.Lock()


def get_model(model: str | os.PathLike[str], **options: Any) -> LocalModel:
    """A process-wide shared ``LocalModel`` per (model, options): load each model once."""
    key = (str(model), tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _SHARED_LOCK:
        lm = _SHARED.get(key)
        if lm is None:
            lm = _SHARED[key] = LocalModel(model, **options)
    return lm
