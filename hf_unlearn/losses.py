"""Pure tensor functions shared by the trainers and the evaluation suite.

Shapes: ``B`` batch, ``T`` sequence length, ``V`` vocabulary. ``labels`` use ``-100`` for positions that do
not count (prompt tokens, padding); logits at position ``t`` predict the token at ``t + 1``.
"""

from __future__ import annotations

import torch

from hf_unlearn.data.formats import IGNORE_INDEX


class _SelectiveLogSoftmax(torch.autograd.Function):
    """``log_softmax(logits.float())`` gathered at ``index``: trl's ``selective_log_softmax`` forward, and a backward
    that writes the logits' gradient ``g * (onehot(index) - softmax(logits))`` into one tensor a sequence at a time.

    (Autograd through trl's loop over sequences would hold every sequence's gradient and then stack them, plus the
    gather's own full-size gradient: more memory than the full log-softmax it replaces.)
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        from trl.trainer.utils import selective_log_softmax

        ctx.save_for_backward(logits, index)
        if logits.dtype == torch.float32:
            return selective_log_softmax(logits, index)
        # bf16 / fp16: upcast one sequence at a time, never all the logits at once
        return torch.cat(
            [selective_log_softmax(row.float(), ids) for row, ids in zip(logits.split(1), index.split(1))]
        )

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, index = ctx.saved_tensors
        if index.ndim == logits.ndim - 1:  # one id per position
            index, grad = index.unsqueeze(-1), grad.unsqueeze(-1)
        grad_logits = torch.empty_like(logits)  # (B, T, V)
        for row, ids, g, out in zip(logits, index, grad, grad_logits):  # (T, V), (T, K), (T, K), (T, V)
            row = row.float()
            softmax = (row - row.logsumexp(-1, keepdim=True)).exp_()  # (T, V)
            out.copy_(softmax.mul_(-g.sum(-1, keepdim=True)).scatter_add_(-1, ids, g.float()))
        return grad_logits, None


def gathered_log_probs(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits.float(), -1)`` gathered at ``index``, without a full-vocabulary log-softmax in memory.

    The forward is trl's ``selective_log_softmax`` (the picked logits minus a per-sequence ``logsumexp``; logits
    that are not fp32 are upcast one sequence at a time); the backward builds the logits' gradient a sequence at a
    time. Neither holds a ``(B, T, V)`` fp32 log-softmax, the step's memory peak on a 49k-128k vocabulary.

    Args:
        logits: ``(B, T, V)`` scores.
        index: ``(B, T)`` or ``(B, T, K)`` token ids in ``[0, V)``.

    Returns:
        fp32 log-probs of the shape of ``index``.
    """
    return _SelectiveLogSoftmax.apply(logits, index)


def token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next label token, and the mask of positions that count.

    Args:
        logits: ``(B, T, V)`` model outputs.
        labels: ``(B, T)`` token ids, ``-100`` where ignored.

    Returns:
        ``(B, T-1)`` fp32 log-probs (0 where masked) and the ``(B, T-1)`` boolean mask.
    """
    shift_labels = labels[:, 1:]  # (B, T-1)
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.masked_fill(~mask, 0)
    logps = gathered_log_probs(logits[:, :-1, :], safe)  # (B, T-1)
    return logps * mask, mask


def sequence_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each sequence's labelled tokens, and their count.

    Returns:
        ``(B,)`` sums of log-probs over labelled tokens and ``(B,)`` numbers of labelled tokens.
    """
    logps, mask = token_log_probs(logits, labels)
    return logps.sum(-1), mask.sum(-1)


def mean_token_log_prob(seq_logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean log-probability per labelled token over a batch: ``sum(seq_logps) / sum(counts)``.

    Args:
        seq_logps: ``(B,)`` summed log-probs per sequence (from :func:`sequence_log_probs`).
        counts: ``(B,)`` labelled tokens per sequence.
    """
    return seq_logps.sum() / counts.sum().clamp(min=1)


def ga_loss(seq_logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the forget set: the negated token-mean NLL, i.e. the mean token log-prob.

    Minimising it pushes the forget answers' likelihood down without bound (hence the safety rail).
    """
    return mean_token_log_prob(seq_logps, counts)


def retain_nll(seq_logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Gradient-descent regulariser (GDR): the token-mean negative log-likelihood on a retain batch."""
    return -mean_token_log_prob(seq_logps, counts)


def npo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Negative preference optimisation (Zhang et al. 2024) on forget sequences.

    ``L = (2/beta) * mean_i log(1 + (pi_theta(y_i|x_i) / pi_ref(y_i|x_i)) ** beta)``, computed stably as
    ``(2/beta) * mean(softplus(beta * (log pi_theta - log pi_ref)))`` on *sequence* log-probs (sums over the
    answer tokens), not on raw logits.

    Args:
        policy_logps: ``(B,)`` sequence log-probs under the model being unlearned.
        ref_logps: ``(B,)`` sequence log-probs under the reference (the model before unlearning).
        beta: inverse temperature; as ``beta -> 0`` NPO tends to gradient ascent.
    """
    if beta <= 0:
        raise ValueError(f"npo_loss needs beta > 0, got {beta}; NPO's default is 0.1.")
    return 2.0 / beta * torch.nn.functional.softplus(beta * (policy_logps - ref_logps)).mean()


def simnpo_loss(
    policy_logps: torch.Tensor, counts: torch.Tensor, beta: float = 2.5, gamma: float = 0.0
) -> torch.Tensor:
    """SimNPO (Fan et al. 2024): NPO without a reference model, on length-normalised log-probs.

    ``L = -(2/beta) * mean_i log sigmoid(-(beta / |y_i|) * log pi_theta(y_i|x_i) - gamma)``
    ``  = (2/beta) * mean_i softplus(beta * log pi_theta(y_i|x_i) / |y_i| + gamma)``.

    Args:
        policy_logps: ``(B,)`` sequence log-probs; counts: ``(B,)`` answer lengths ``|y_i|`` in tokens.
        beta: inverse temperature (> 0); gamma: reward margin.
    """
    if beta <= 0:
        raise ValueError(f"simnpo_loss needs beta > 0, got {beta}.")
    per_token = policy_logps / counts.clamp(min=1)  # (B,)
    return 2.0 / beta * torch.nn.functional.softplus(beta * per_token + gamma).mean()


def idk_nll_loss(seq_logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """IdkNLL (TOFU, Maini et al. 2024): the token-mean NLL of refusal answers given the forget questions.

    The same quantity as :func:`retain_nll`, on ``(forget question, refusal)`` pairs: minimising it teaches the
    model to answer the forget questions with a refusal instead of the memorised answer.
    """
    return retain_nll(seq_logps, counts)


def dpo_loss(
    chosen_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """DPO's sigmoid loss (Rafailov et al. 2023); IdkDPO (TOFU) with a refusal chosen and the forget answer rejected.

    ``L = -mean_i log sigmoid(beta * ((c_i - c_ref_i) - (r_i - r_ref_i)))`` on *sequence* log-probs (sums over the
    answer tokens) of the chosen (``c``) and rejected (``r``) answers under the model and the reference.
    (trl computes the same term inside ``DPOTrainer``; it has no pure function of it to reuse.)

    Args:
        chosen_logps, ref_chosen_logps: ``(B,)`` chosen-answer log-probs under the model and the reference.
        rejected_logps, ref_rejected_logps: ``(B,)`` rejected-answer log-probs under the model and the reference.
        beta: inverse temperature (> 0); the TOFU paper uses 0.1.
    """
    if beta <= 0:
        raise ValueError(f"dpo_loss needs beta > 0, got {beta}; DPO's usual value is 0.1.")
    margin = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)  # (B,)
    return -torch.nn.functional.logsigmoid(beta * margin).mean()


def retain_kl(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL regulariser (KLR): ``KL(pi_ref || pi_theta)`` of the next-token distributions, averaged over labelled
    positions of a retain batch.

    Args:
        logits: ``(B, T, V)`` outputs of the model being unlearned.
        ref_logits: ``(B, T, V)`` outputs of the reference model on the same batch.
        labels: ``(B, T)`` with ``-100`` where the position does not count.
    """
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, T-1)
    kl = _kl(ref_logits[:, :-1, :].float().log_softmax(-1), logits[:, :-1, :])  # (B, T-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def _kl(target_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(exp(target_logp) || softmax(logits))`` over the last dimension, in fp32."""
    return (target_logp.exp() * (target_logp - logits.float().log_softmax(-1))).sum(-1)


def nonmember_kl(
    logits: torch.Tensor,
    target_logits: torch.Tensor,
    target_index: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    target_input_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Non-member distillation: ``KL(q || p_model)`` of the next-token distributions, averaged over the counted
    positions. ``logits`` are the model's on a forget row, ``target_logits`` the reference model's on the same
    row with the person renamed to a stranger, and position ``t`` of the row is compared with position
    ``a = target_index[b, t]`` of the renamed row (:func:`~hf_unlearn.data.nonmembers.align_positions`; ``-1``:
    not counted, e.g. padding and the last token, which predicts nothing). See
    :class:`~hf_unlearn.trainers.nonmember_config.NonMemberConfig`.

    ``q`` is the reference's distribution at ``a``. Given the token ids, where the row's next token ``o`` (a piece
    of the forget name) differs from the renamed row's ``r`` (the stand-in's), ``q(o)`` is set to the reference's
    ``q(r)`` and ``q`` renormalised: the forget name's piece becomes as likely as a stranger's name piece, which
    the reference never saw (without this, the position before a name would keep the original model's knowledge
    of which names exist, since its context is the same in both rows).

    Args:
        logits: ``(B, T, V)`` outputs of the model being unlearned.
        target_logits: ``(B, T', V)`` reference outputs on the renamed rows.
        target_index: ``(B, T)`` long, positions into ``T'`` or ``-1``.
        input_ids: ``(B, T)`` the rows' tokens and ``target_input_ids``: ``(B, T')`` the renamed rows' (both or
            neither).
    """
    counted = target_index >= 0
    index = target_index.clamp(min=0)
    target_logp = (
        target_logits.float()
        .log_softmax(-1)
        .gather(1, index.unsqueeze(-1).expand(-1, -1, target_logits.shape[-1]))
    )  # (B, T, V)
    if input_ids is not None:
        pad = torch.zeros_like(input_ids[:, :1])
        own_next = torch.cat([input_ids[:, 1:], pad], 1).unsqueeze(-1)  # (B, T, 1)
        renamed_next = target_input_ids.gather(1, (index + 1).clamp(max=target_input_ids.shape[1] - 1))
        swap = (counted & (own_next.squeeze(-1) != renamed_next)).unsqueeze(-1)
        stranger = target_logp.gather(-1, renamed_next.unsqueeze(-1))
        lowered = target_logp.scatter(-1, own_next, stranger)
        lowered = lowered - lowered.logsumexp(-1, keepdim=True)
        target_logp = torch.where(swap, lowered, target_logp)
    kl = _kl(target_logp, logits)  # (B, T)
    return (kl * counted).sum() / counted.sum().clamp(min=1)


def whp_generic_logits(
    base_logits: torch.Tensor, reinforced_logits: torch.Tensor, alpha: float = 5.0
) -> torch.Tensor:
    """WHP's generic prediction (Eldan & Russinovich 2023): ``v_base - alpha * ReLU(v_reinforced - v_base)``.

    Tokens whose score the reinforced model (the baseline fine-tuned further on the forget data) raised are
    pushed down in proportion to the rise; tokens it did not raise keep the baseline's score. Both inputs must
    be on the same scale for the difference to mean something (e.g. both log-softmax normalised).

    Args:
        base_logits: ``(..., V)`` scores of the baseline model.
        reinforced_logits: ``(..., V)`` scores of the reinforced model at the same positions.
        alpha: strength of the push-down (>= 0); 0 returns the baseline scores.
    """
    if alpha < 0:
        raise ValueError(f"whp_generic_logits needs alpha >= 0, got {alpha}; alpha=0 keeps the baseline.")
    base = base_logits.float()
    return base - alpha * torch.relu(reinforced_logits.float() - base)


def soft_target_cross_entropy(
    logits: torch.Tensor, target_ids: torch.Tensor, target_probs: torch.Tensor
) -> torch.Tensor:
    """Token-mean cross-entropy against sparse soft targets (a one-hot target is a hard label).

    Position ``t``'s target is a distribution over ``K`` token ids: ``target_ids[b, t, k]`` with probability
    ``target_probs[b, t, k]``. Positions whose probabilities sum to 0 do not count. As with labels, the
    target at position ``t`` is predicted by the logits at ``t - 1``.

    Args:
        logits: ``(B, T, V)`` model outputs.
        target_ids: ``(B, T, K)`` token ids (any valid id where the probability is 0).
        target_probs: ``(B, T, K)`` probabilities, each counting position summing to 1.

    Returns:
        ``-sum_k p_k log q(id_k)`` averaged over counting positions (0 when none count).
    """
    ids, probs = target_ids[:, 1:], target_probs[:, 1:].float()  # (B, T-1, K)
    picked = gathered_log_probs(logits[:, :-1, :], ids)  # (B, T-1, K)
    per_position = -(probs * picked).sum(-1)  # (B, T-1)
    counts = probs.sum(-1) > 0
    return (per_position * counts).sum() / counts.sum().clamp(min=1)


def masked_activation_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU's distance between hidden states and a target (Li et al. 2024, "The WMDP Benchmark"): the squared error
    averaged over the hidden dimension, then over the counting tokens of each sequence, then over the batch.

    RMU's loss is ``mse(h_forget, c * u) + alpha * mse(h_retain, h_ref_retain)``, both terms this function at one
    decoder layer (``c * u`` from :func:`rmu_control_vector`, ``h_ref_retain`` the frozen reference's states).

    Args:
        hidden: ``(B, T, D)`` hidden states.
        target: ``(B, T, D)`` target states, or anything that broadcasts to them (a ``(D,)`` control vector).
        mask: ``(B, T)`` boolean, True at the tokens that count (answer tokens: ``labels != -100``, so prompt and
            padding do not count). A sequence without counting tokens adds 0 to the batch mean.
    """
    per_token = (hidden.float() - target.float()).pow(2).mean(-1)  # (B, T)
    counts = mask.sum(-1).clamp(min=1)  # (B,)
    return ((per_token * mask).sum(-1) / counts).mean()


def rmu_control_vector(dim: int, steering_coeff: float, seed: int) -> torch.Tensor:
    """RMU's fixed random target ``c * u`` (Li et al. 2024, "The WMDP Benchmark"): ``u`` drawn uniformly from
    ``[0, 1)^dim`` with ``seed`` and scaled to unit norm, times ``steering_coeff``.

    Returns:
        ``(dim,)`` fp32 vector of norm ``steering_coeff``.
    """
    u = torch.rand(dim, generator=torch.Generator().manual_seed(seed))
    return steering_coeff * u / u.norm()


def undial_loss(
    logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float = 10.0
) -> torch.Tensor:
    """UNDIAL (Dong et al. 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning").

    Self-distillation toward the reference model with the label token's logit lowered by ``beta``: the target at
    each labelled position is ``softmax(ref_logits - beta * onehot(label))`` and the loss is the cross-entropy of
    the model's next-token distribution against it, averaged over labelled positions (it differs from the KL by
    the target's entropy, a constant: the gradient is the same).

    Args:
        logits: ``(B, T, V)`` outputs of the model being unlearned.
        ref_logits: ``(B, T, V)`` outputs of the reference model on the same batch.
        labels: ``(B, T)`` with ``-100`` where the position does not count (prompt, padding).
        beta: how far the label token's logit is lowered (>= 0); 0 distills toward the reference unchanged.
    """
    if beta < 0:
        raise ValueError(f"undial_loss needs beta >= 0, got {beta}; UNDIAL's default is 10.")
    shift_labels = labels[:, 1:]  # (B, T-1)
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.masked_fill(~mask, 0).unsqueeze(-1)  # (B, T-1, 1)
    adjusted = (
        ref_logits[:, :-1, :].float().scatter_add(-1, safe, torch.full_like(safe, -beta, dtype=torch.float))
    )
    target = adjusted.softmax(-1)  # (B, T-1, V)
    ce = -(target * logits[:, :-1, :].float().log_softmax(-1)).sum(-1)  # (B, T-1)
    return (ce * mask).sum() / mask.sum().clamp(min=1)
