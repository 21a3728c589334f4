"""Embedding corruptions of ECO: pure, seeded functions of one prompt's ``(seq, hidden)`` embeddings.

Each function returns a new tensor (the input is never modified) of the same shape and dtype, and is
deterministic: the same embeddings, strength and seed give the same output on any device (random draws are
made on the CPU in float32 and then moved). ``CORRUPTIONS`` maps the names used in guard configs to them; every
entry has the signature ``fn(embeds, strength, dims, seed)``.

- ``gaussian_noise``: ``e + sigma * z``, ``z ~ N(0, I)`` on the first ``dims`` hidden dimensions (all if ``None``).
- ``zero_out``: zero the first ``dims`` hidden dimensions (all if ``None``).
- ``sign_flip``: negate the first ``dims`` hidden dimensions (all if ``None``).
- ``shuffle``: permute the token order.
- ``reverse``: reverse the token order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _check(embeds: torch.Tensor, dims: int | None) -> int:
    if embeds.dim() != 2:
        raise ValueError(
            f"Corruptions act on one prompt's (seq, hidden) embeddings; got shape {tuple(embeds.shape)}. "
            "Corrupt batched prompts row by row."
        )
    hidden = embeds.shape[-1]
    if dims is None:
        return hidden
    if not 0 < dims <= hidden:
        raise ValueError(f"dims must be in [1, {hidden}] (the hidden size) or None for all; got {dims}.")
    return dims


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed) % (2**63))


def gaussian_noise(
    embeds: torch.Tensor, sigma: float, dims: int | None = None, seed: int = 0
) -> torch.Tensor:
    """Add ``N(0, sigma^2)`` noise to the first ``dims`` hidden dimensions of every token.

    Args:
        embeds: ``(seq, hidden)`` prompt embeddings.
        sigma: noise standard deviation (>= 0); 0 returns an unchanged copy.
        dims: corrupt only the first ``dims`` dimensions (``None``: all).
        seed: seed of the noise draw.
    """
    n = _check(embeds, dims)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}.")
    noise = torch.randn(embeds.shape[0], n, generator=_generator(seed), dtype=torch.float32)  # (seq, n)
    out = embeds.clone()
    out[:, :n] += (sigma * noise).to(device=embeds.device, dtype=embeds.dtype)
    return out


def zero_out(embeds: torch.Tensor, dims: int | None = None) -> torch.Tensor:
    """Set the first ``dims`` hidden dimensions (``None``: all) of every token to zero."""
    n = _check(embeds, dims)
    out = embeds.clone()
    out[:, :n] = 0
    return out


def sign_flip(embeds: torch.Tensor, dims: int | None = None) -> torch.Tensor:
    """Negate the first ``dims`` hidden dimensions (``None``: all) of every token."""
    n = _check(embeds, dims)
    out = embeds.clone()
    out[:, :n] = -out[:, :n]
    return out


def shuffle(embeds: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Permute the token order (a seeded random permutation of the ``seq`` axis)."""
    _check(embeds, None)
    order = torch.randperm(embeds.shape[0], generator=_generator(seed)).to(embeds.device)
    return embeds[order].clone()


def reverse(embeds: torch.Tensor) -> torch.Tensor:
    """Reverse the token order."""
    _check(embeds, None)
    return embeds.flip(0)


# name -> fn(embeds, strength, dims, seed); ``strength`` is sigma for the noise and ignored by the others.
CORRUPTIONS: dict[str, Callable[[torch.Tensor, float, int | None, int], torch.Tensor]] = {
    "gaussian_noise": lambda e, strength, dims, seed: gaussian_noise(e, strength, dims, seed),
    "zero_out": lambda e, strength, dims, seed: zero_out(e, dims),
    "sign_flip": lambda e, strength, dims, seed: sign_flip(e, dims),
    "shuffle": lambda e, strength, dims, seed: shuffle(e, seed),
    "reverse": lambda e, strength, dims, seed: reverse(e),
}
# Corruptions whose effect grows with ``strength`` (the ones the zeroth-order search can tune).
TUNABLE = ("gaussian_noise",)


def corrupt(
    embeds: torch.Tensor,
    name: str,
    strength: float = 0.0,
    dims: int | None = None,
    seed: int = 0,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply the corruption ``name`` to the rows of ``embeds`` selected by the bool mask ``positions``.

    Args:
        embeds: ``(seq, hidden)`` prompt embeddings.
        positions: ``(seq,)`` bool, the tokens to corrupt (``None``: all). Shuffle/reverse reorder only the
            selected tokens among themselves.

    Raises:
        ValueError: unknown corruption name or a mask of the wrong shape.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {name!r}; choose one of {sorted(CORRUPTIONS)}.")
    fn = CORRUPTIONS[name]
    if positions is None:
        return fn(embeds, strength, dims, seed)
    if positions.shape != embeds.shape[:1] or positions.dtype != torch.bool:
        raise ValueError(
            f"positions must be a bool mask of shape ({embeds.shape[0]},); got {positions.dtype} "
            f"{tuple(positions.shape)}."
        )
    out = embeds.clone()
    if positions.any():
        out[positions] = fn(embeds[positions], strength, dims, seed)
    return out
