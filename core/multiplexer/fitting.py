"""Fitting a ``QualityPredictor`` (torch) and calibrating the trained selector's rules on
held-out data: the threshold on P(small fails) for a share of large calls or a quality target,
and the failure price of the expected-cost rule (``TrainedSelector(threshold=..., failure_price=...)``
read them by name from ``PredictorConfig.calibration``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cachemux.errors import ConfigError
from cachemux.multiplexer.predictor import EMBEDDING_MODEL_ID, PredictorConfig, QualityPredictor, build_torch_head

__all__ = ["Curve", "FitConfig", "calibrate_failure_price", "calibrate_quality", "calibrate_share",
           "cost_at_quality", "fit_predictor", "gain_per_cost", "per_extra_cost", "routing_curve"]


# ---- fitting the head (torch): BCE per model (soft labels allowed, NaN = missing), L2 on weights

@dataclass(frozen=True)
class FitConfig:
    """How to fit the head. ``l2`` is the mean-loss penalty on weights (not biases): sklearn's
    LogisticRegression(C) is l2 = 1 / (2 C n). A logistic head (hidden=0, no dropout) is fitted
    full-batch with L-BFGS (a convex problem: exact); an MLP with AdamW, minibatches, and early
    stopping on ``val`` when given."""

    hidden: int = 0
    dropout: float = 0.0
    l2: float = 1e-3
    text_features: tuple[str, ...] = ()
    lr: float = 1e-3
    epochs: int = 60
    batch_size: int = 256
    patience: int = 6
    seed: int = 0

    def label(self) -> str:
        head = f"mlp{self.hidden}" + (f"-do{self.dropout:g}" if self.dropout else "") if self.hidden else "logistic"
        return f"{head}-l2={self.l2:g}" + ("+text" if self.text_features else "")


def fit_predictor(models: Sequence[str], embeddings: np.ndarray | None, texts: Sequence[str], labels: np.ndarray,
                  fit: FitConfig = FitConfig(), *, val: tuple[np.ndarray | None, Sequence[str], np.ndarray] | None = None,
                  costs: dict[str, float] | None = None, meta: dict[str, Any] | None = None,
                  embedding_dim: int | None = None, embedding_model: str | None = None) -> QualityPredictor:
    """Train a ``QualityPredictor`` on (embeddings, texts) -> labels (n, len(models)) in [0, 1]."""
    import torch

    labels = np.asarray(labels, dtype=np.float32)
    n = len(texts)
    if labels.shape != (n, len(models)):
        raise ConfigError(f"labels must have shape {(n, len(models))}, got {labels.shape}")
    finite = labels[np.isfinite(labels)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ConfigError("labels must lie in [0, 1] (NaN marks a missing label)")
    dim = embedding_dim if embedding_dim is not None else (0 if embeddings is None else int(np.asarray(embeddings).shape[1]))
    cfg = PredictorConfig(tuple(models), embedding_model=embedding_model or EMBEDDING_MODEL_ID, embedding_dim=dim, text_features=fit.text_features, hidden=fit.hidden,
                          dropout=fit.dropout, costs=dict(costs or {}), meta=dict(meta or {}))
    shell = QualityPredictor(cfg, {k: np.zeros(s, np.float32) + (k == "feature_std") for k, s in cfg.param_shapes().items()})
    x = shell.features(texts, embeddings if dim else None)
    mean = x.mean(0)
    std = x.std(0)
    std[std < 1e-6] = 1.0
    torch.manual_seed(fit.seed)
    head = build_torch_head(cfg)
    head.feature_mean.copy_(torch.from_numpy(mean))
    head.feature_std.copy_(torch.from_numpy(std.astype(np.float32)))
    X = torch.from_numpy(x)
    Y = torch.from_numpy(np.nan_to_num(labels, nan=0.0))
    M = torch.from_numpy(np.isfinite(labels).astype(np.float32))
    weights = [p for name, p in head.named_parameters() if name.endswith("weight")]

    def loss_of(xb: torch.Tensor, yb: torch.Tensor, mb: torch.Tensor) -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(head(xb), yb, reduction="none")
        return (bce * mb).sum() / mb.sum().clamp_min(1.0)

    def penalty() -> torch.Tensor:
        return fit.l2 * sum((w ** 2).sum() for w in weights)

    if fit.hidden == 0 and fit.dropout == 0.0:
        opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=500, tolerance_grad=1e-6,
                                history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_of(X, Y, M) + penalty()
            loss.backward()
            return loss

        opt.step(closure)
    else:
        opt = torch.optim.AdamW(head.parameters(), lr=fit.lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(fit.seed)
        vx = vy = vm = None
        if val is not None:
            ve, vt, vl = val
            vx = torch.from_numpy(shell.features(vt, ve if dim else None))
            vl = np.asarray(vl, dtype=np.float32)
            vy, vm = torch.from_numpy(np.nan_to_num(vl, nan=0.0)), torch.from_numpy(np.isfinite(vl).astype(np.float32))
        best, best_state, bad = math.inf, None, 0
        for _epoch in range(fit.epochs):
            head.train()
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, fit.batch_size):
                b = perm[i:i + fit.batch_size]
                opt.zero_grad()
                loss = loss_of(X[b], Y[b], M[b]) + penalty()
                loss.backward()
                opt.step()
            if vx is not None:
                head.eval()
                with torch.no_grad():
                    v = float(loss_of(vx, vy, vm))
                if v < best - 1e-5:
                    best, bad = v, 0
                    best_state = {k: t.clone() for k, t in head.state_dict().items()}
                else:
                    bad += 1
                    if bad >= fit.patience:
                        break
        if best_state is not None:
            head.load_state_dict(best_state)
    head.eval()
    return QualityPredictor.from_torch(cfg, head)


# ---- cost-quality curves and calibration ----------------------------------------------------------

@dataclass
class Curve:
    """Routing the top-k queries (by ``score``) to the large model, k = 0..n."""

    share: np.ndarray  # share of queries on the large model
    quality: np.ndarray  # mean quality of the routed answers
    cost: np.ndarray  # total cost


def routing_curve(score_large: np.ndarray, quality: np.ndarray, costs: np.ndarray) -> Curve:
    """Two models (columns 0 = small, 1 = large): send the queries with the highest
    ``score_large`` to the large model, one more at a time."""
    order = np.argsort(-np.asarray(score_large, dtype=float), kind="mergesort")
    q, c = quality[order], costs[order]
    n = len(q)
    dq = np.concatenate([[0.0], np.cumsum(q[:, 1] - q[:, 0])])
    dc = np.concatenate([[0.0], np.cumsum(c[:, 1] - c[:, 0])])
    return Curve(np.arange(n + 1) / max(n, 1), (q[:, 0].sum() + dq) / max(n, 1), c[:, 0].sum() + dc)


def cost_at_quality(curve: Curve, target: float) -> tuple[float, float] | None:
    """(least cost, its share of large calls) among the curve's points with quality >= target;
    None when no point reaches it."""
    ok = curve.quality >= target - 1e-12
    if not ok.any():
        return None
    i = int(np.argmin(np.where(ok, curve.cost, np.inf)))
    return float(curve.cost[i]), float(curve.share[i])


def calibrate_share(p_fail: np.ndarray, target_share: float) -> float:
    """RouteLLM's quantile calibration: the threshold tau on P(small fails) such that a share
    ``target_share`` of the calibration queries has P(fail) > tau (and goes to the large model)."""
    if not (0.0 <= target_share <= 1.0):
        raise ConfigError(f"target share must be in [0, 1], got {target_share!r}")
    p = np.sort(np.asarray(p_fail, dtype=float))
    if p.size == 0:
        raise ConfigError("calibration needs at least one query")
    k = int(round((1.0 - target_share) * len(p)))  # k queries stay on the small model
    if k <= 0:
        return float(max(0.0, np.nextafter(p[0], -np.inf)))
    if k >= len(p):
        return 1.0
    return float((p[k - 1] + p[k]) / 2)


def calibrate_quality(p_fail: np.ndarray, quality: np.ndarray, costs: np.ndarray, target_frac: float = 0.95) -> dict[str, Any]:
    """The cheapest threshold tau on P(small fails) whose routed quality on the calibration set is
    >= ``target_frac`` x the large model's quality (ties in P(fail) move together)."""
    p = np.asarray(p_fail, dtype=float)
    curve = routing_curve(p, quality, costs)
    target = target_frac * quality[:, 1].mean()
    hit = cost_at_quality(curve, target)
    if hit is None:
        return {"threshold": 0.0, "target_quality": target, "share_large": 1.0}
    k_large = int(round(hit[1] * len(p)))
    ps = np.sort(p)[::-1]  # descending: the first k_large go large
    if k_large == 0:
        tau = 1.0
    elif k_large >= len(ps):
        tau = float(max(0.0, np.nextafter(ps[-1], -np.inf)))
    else:
        tau = float((ps[k_large - 1] + ps[k_large]) / 2)
    return {"threshold": tau, "target_quality": float(target), "share_large": hit[1]}


def per_extra_cost(score: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """``score`` per unit of the query's extra cost c_large - c_small (columns 0 small, 1 large)."""
    out: np.ndarray = score / np.maximum(costs[:, 1] - costs[:, 0], 1e-30)
    return out


def gain_per_cost(p: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """The expected-cost rule's ranking: (P(large right) - P(small right)) / extra cost; the rule
    sends q to large iff failure_price x gain > extra cost."""
    return per_extra_cost(p[:, 1] - p[:, 0], costs)


def calibrate_failure_price(p: np.ndarray, quality: np.ndarray, costs: np.ndarray, target_frac: float = 0.95) -> dict[str, Any]:
    """The price of a wrong answer (cost units) at which the selector's expected-cost rule, large iff
    price x (p_large - p_small) > c_large - c_small, reaches ``target_frac`` of the large model's
    quality on the calibration set at the least cost (``TrainedSelector(failure_price=...)``)."""
    s = gain_per_cost(p, costs)
    hit = cost_at_quality(routing_curve(s, quality, costs), target_frac * float(quality[:, 1].mean()))
    k = len(s) if hit is None else int(round(hit[1] * len(s)))
    ss = np.sort(s)[::-1]
    if k == 0:
        t = float(ss[0]) * 1.0001 if ss[0] > 0 else 0.0
    elif k >= len(ss):
        t = float(ss[-1]) * 0.9999 if ss[-1] > 0 else 0.0
    else:
        t = float((ss[k - 1] + ss[k]) / 2)
    price = 1.0 / t if t > 0 else float("inf")
    return {"failure_price": price if math.isfinite(price) else None, "share_large": k / max(len(s), 1),
            "target_frac_of_large": target_frac, "rule": "gain_per_cost"}
