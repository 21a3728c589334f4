"""Zeroth-order search of the corruption strength (ECO, Liu et al. 2024).

The guarded model's forget metric is not differentiable in the strength sigma (it goes through a classifier, a
threshold and argmax decoding), so ECO estimates the gradient from two evaluations of the objective,

    g = (f(theta + mu * u) - f(theta - mu * u)) / (2 * mu) * u,    u ~ N(0, 1),

and descends on it. Here ``theta = log(sigma)`` (strengths span orders of magnitude), and the objective is the
gap between the guarded model's forget metric and the retrained model's (see ``fit.search_strength``).
:func:`zeroth_order_search` is the generic optimiser; :func:`forget_metric` evaluates a metric through the
real forward pass of a :class:`~hf_unlearn.eco.guard.GuardedModel` (``inputs_embeds``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hf_unlearn.eco.config import FORGET_METRICS
from hf_unlearn.evaluation.qa import score_answers


@dataclass
class SearchResult:
    """``best``: the strength with the lowest objective seen; ``history``: every ``(strength, objective)``."""

    best: float
    best_value: float
    history: list[tuple[float, float]] = field(default_factory=list)


def zeroth_order_search(
    objective: Callable[[float], float],
    init: float,
    steps: int = 20,
    lr: float = 1.0,
    mu: float = 0.25,
    seed: int = 0,
    log_space: bool = True,
    bounds: tuple[float, float] = (1e-4, 1e4),
    tol: float = 0.0,
) -> SearchResult:
    """Minimise ``objective(x)`` over a scalar ``x`` with two-point gradient estimates.

    Args:
        objective: the function to minimise (one call per evaluation; two per step).
        init: the starting point (> 0 with ``log_space``).
        steps: update steps (at most ``2 * steps + 2`` objective calls).
        lr: step size on ``theta`` (``log x`` with ``log_space``, else ``x``).
        mu: smoothing radius of the two-point estimate, in the same space.
        seed: seed of the random directions ``u``.
        log_space: search ``theta = log x`` (scale-free; keeps ``x`` positive).
        bounds: ``x`` is clipped into ``[low, high]``.
        tol: stop as soon as an objective value ``<= tol`` is seen.

    Raises:
        ValueError: ``init`` outside ``bounds`` or not positive in log space.
    """
    low, high = bounds
    if not low <= init <= high or (log_space and init <= 0):
        raise ValueError(f"init={init} must lie in bounds {bounds} (and be > 0 with log_space=True).")
    to_x = math.exp if log_space else float
    to_theta = math.log if log_space else float
    lo_t, hi_t = to_theta(low), to_theta(high)
    rng = np.random.default_rng(seed)
    history: list[tuple[float, float]] = []

    def evaluate(theta: float) -> float:
        x = to_x(min(max(theta, lo_t), hi_t))
        value = float(objective(x))
        history.append((x, value))
        return value

    theta, radius = to_theta(init), mu
    if evaluate(theta) > tol:
        for _ in range(steps):
            u = float(rng.standard_normal())
            plus, minus = evaluate(theta + radius * u), evaluate(theta - radius * u)
            if min(plus, minus) <= tol:
                break
            # a flat objective (a step-like metric such as EM) gives a zero estimate: widen the probe until the
            # two points differ, then return to the base radius
            theta = min(max(theta - lr * (plus - minus) / (2 * radius) * u, lo_t), hi_t)
            radius = radius * 2 if plus == minus else mu
        else:
            evaluate(theta)
    best, best_value = min(history, key=lambda h: (h[1], h[0]))
    return SearchResult(best=best, best_value=best_value, history=history)


def forget_metric(
    guarded_model, tokenizer, questions: list[str], answers: list[str], metric: str = "em"
) -> float:
    """The guarded model's forget metric, teacher-forced through its real ``inputs_embeds`` forward pass.

    ``em``: share of answers that are the argmax at every token; ``prob``: mean length-normalised answer
    probability ``exp(log_prob / n_tokens)`` (TOFU's "Prob").
    """
    if metric not in FORGET_METRICS:
        raise ValueError(f"Unknown forget metric {metric!r}; choose one of {FORGET_METRICS}.")
    scores = score_answers(guarded_model, tokenizer, questions, answers)
    if metric == "em":
        return scores["exact_match"].mean().item()
    return (scores["log_prob"] / scores["n_tokens"].clamp(min=1)).exp().mean().item()
