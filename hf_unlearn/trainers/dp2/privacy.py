"""What DP2Unlearning's guarantee covers, and the randomness it rests on.

- :func:`dp_generators`: the generators of DP-SGD's Poisson sampling and Gaussian noise. Seeded from
  ``os.urandom`` by default and the seeds are never written anywhere, so nobody can regenerate the noise from
  a published seed; ``reproducible_dp_noise=True`` (a research setting) seeds them from ``args.seed``.
- :func:`group_privacy`: an (epsilon, delta)-DP mechanism is (k·epsilon, k·e^((k-1)·epsilon)·delta)-DP for a
  group of k privacy units (Dwork & Roth 2014, *The Algorithmic Foundations of Differential Privacy*, §2.3;
  Vadhan 2017, *The Complexity of Differential Privacy*, Lemma 2.2). A deletion request removing k subjects is
  covered by that group bound, not by the per-subject epsilon.
- :func:`request_bounds`: the group bound of every request and the cumulative one after n requests (every
  request is answered from the same DP model, so the group is the union of the units deleted so far).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import torch


def dp_generators(args) -> tuple[torch.Generator, torch.Generator]:
    """``(sampling, noise)`` generators for opacus: from ``os.urandom`` unless ``args.reproducible_dp_noise``.

    ``torch.Generator`` is a Mersenne Twister, not a cryptographic generator (opacus' ``secure_mode`` needs
    ``torchcsprng``); its 64-bit seed comes from the OS and is kept nowhere, so the noise cannot be regenerated
    from anything the run publishes.
    """
    if args.reproducible_dp_noise:
        seeds = (args.seed, args.seed + 1)
    else:
        seeds = tuple(int.from_bytes(os.urandom(8), "little") for _ in range(2))
    sampling, noise = (torch.Generator().manual_seed(seed) for seed in seeds)
    return sampling, noise


def group_privacy(epsilon: float, delta: float, k: int) -> dict:
    """``{"units", "epsilon", "delta"}`` for a group of ``k`` units: ``k·epsilon`` and ``k·e^((k-1)·epsilon)·delta``,
    the delta capped at 1 (a bound of 1 guarantees nothing).

    Raises:
        ValueError: ``k`` below 1, or epsilon/delta negative.
    """
    if k < 1 or epsilon < 0 or delta < 0:
        raise ValueError(
            f"group_privacy(epsilon={epsilon}, delta={delta}, k={k}): a group has k >= 1 units and epsilon, "
            "delta are >= 0."
        )
    if delta == 0:
        group_delta = 0.0
    elif math.log(k) + (k - 1) * epsilon + math.log(delta) >= 0:  # >= 1, and e^((k-1)eps) may overflow
        group_delta = 1.0
    else:
        group_delta = k * math.exp((k - 1) * epsilon) * delta
    return {"units": k, "epsilon": k * epsilon, "delta": group_delta}


def request_units(request: Mapping, privacy_unit: str) -> int:
    """The privacy units a request (a ``request_fingerprint`` dict) deletes: its subjects or its records."""
    if privacy_unit == "subject" and "n_subjects" in request:
        return int(request["n_subjects"])
    return int(request["n_rows"])


def request_bounds(
    privacy: Mapping, requests: Sequence[Mapping], cumulative_units: int | None = None
) -> dict:
    """``{"group_bounds": [per request], "cumulative_bound": {...}}`` from a DP model's privacy record.

    ``cumulative_units`` is the number of distinct units deleted by all ``requests`` together; by default the
    sum over the requests (an upper bound, exact when no unit is requested twice), which gives a valid bound.
    """
    eps, delta, unit = privacy["epsilon"], privacy["delta"], privacy["privacy_unit"]
    per_request = [
        {"request": i + 1, **group_privacy(eps, delta, request_units(r, unit))}
        for i, r in enumerate(requests)
    ]
    total = cumulative_units if cumulative_units is not None else sum(b["units"] for b in per_request)
    return {
        "group_bounds": per_request,
        "cumulative_bound": {"requests": len(requests), **group_privacy(eps, delta, max(1, total))},
    }
