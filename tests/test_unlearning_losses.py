"""The unlearning losses against numbers computed by hand (scalar ``math``, not the tensor code under test)."""

import math

import pytest
import torch

from hf_unlearn.losses import (
    dpo_loss,
    ga_loss,
    gathered_log_probs,
    idk_nll_loss,
    masked_activation_mse,
    npo_loss,
    retain_kl,
    retain_nll,
    rmu_control_vector,
    sequence_log_probs,
    simnpo_loss,
    token_log_probs,
    undial_loss,
)


def softplus(x: float) -> float:
    return math.log(1 + math.exp(x))


def test_ga_and_retain_nll_are_token_means_of_opposite_sign():
    logps, counts = torch.tensor([-2.0, -4.0]), torch.tensor([1, 3])
    assert ga_loss(logps, counts).item() == pytest.approx(-6.0 / 4)
    assert retain_nll(logps, counts).item() == pytest.approx(6.0 / 4)


def test_npo_loss_uses_sequence_log_ratio_to_reference():
    policy, ref = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0])
    # log ratios are +1 and -1; (2/beta) * mean(log(1 + ratio**beta))
    expected = 2 / 0.1 * (math.log(1 + math.exp(1.0) ** 0.1) + math.log(1 + math.exp(-1.0) ** 0.1)) / 2
    assert npo_loss(policy, ref, beta=0.1).item() == pytest.approx(expected, rel=1e-6)
    # at the reference the loss is (2/beta) log 2, whatever the sequence probabilities are
    assert npo_loss(ref, ref, beta=0.5).item() == pytest.approx(4 * math.log(2), rel=1e-6)
    with pytest.raises(ValueError, match="beta > 0"):
        npo_loss(policy, ref, beta=0.0)


def test_npo_gradient_shrinks_as_the_forget_sequence_becomes_unlikely():
    ref = torch.tensor([-2.0])
    grads = []
    for value in (-2.0, -30.0):
        policy = torch.tensor([value], requires_grad=True)
        npo_loss(policy, ref, beta=0.1).backward()
        grads.append(policy.grad.item())
    # d/dx (2/b) softplus(b (x - r)) = 2 sigmoid(b (x - r)): 1 at the reference, 2 sigmoid(-2.8) far below it
    assert grads[0] == pytest.approx(1.0)
    assert grads[1] == pytest.approx(2 / (1 + math.exp(2.8)), rel=1e-5)


def test_idk_nll_loss_is_the_token_mean_nll_of_the_refusals():
    logps, counts = torch.tensor([-3.0, -1.0, -2.0]), torch.tensor([2, 1, 3])
    assert idk_nll_loss(logps, counts).item() == pytest.approx(6.0 / 6)


def test_dpo_loss_is_minus_log_sigmoid_of_the_scaled_reward_margin():
    chosen, ref_chosen = torch.tensor([-2.0, -5.0]), torch.tensor([-4.0, -5.0])
    rejected, ref_rejected = torch.tensor([-3.0, -1.0]), torch.tensor([-1.0, -2.0])
    # margins (c - c_ref) - (r - r_ref): (2 - -2) = 4 and (0 - 1) = -1; -log sigmoid(x) = log(1 + exp(-x))
    expected = (math.log(1 + math.exp(-0.5 * 4)) + math.log(1 + math.exp(-0.5 * -1))) / 2
    assert dpo_loss(chosen, ref_chosen, rejected, ref_rejected, beta=0.5).item() == pytest.approx(
        expected, rel=1e-6
    )
    # at the reference the loss is log 2, whatever the log-probs are
    assert dpo_loss(chosen, chosen, rejected, rejected, beta=0.1).item() == pytest.approx(
        math.log(2), rel=1e-6
    )
    # the gradient raises the chosen answer and lowers the rejected one: d/dc = -beta sigmoid(-beta m)
    c, r = torch.tensor([-2.0], requires_grad=True), torch.tensor([-3.0], requires_grad=True)
    dpo_loss(c, torch.tensor([-2.0]), r, torch.tensor([-3.0]), beta=0.1).backward()
    assert c.grad.item() == pytest.approx(-0.1 * 0.5) and r.grad.item() == pytest.approx(0.1 * 0.5)
    with pytest.raises(ValueError, match="beta > 0"):
        dpo_loss(chosen, ref_chosen, rejected, ref_rejected, beta=0.0)


def test_simnpo_loss_is_length_normalised_with_margin():
    logps, counts = torch.tensor([-2.0, -6.0]), torch.tensor([2, 3])
    # per-token log-probs -1 and -2; (2/beta) mean softplus(beta * x + gamma)
    expected = 2 / 2.5 * (softplus(2.5 * -1 + 0.5) + softplus(2.5 * -2 + 0.5)) / 2
    assert simnpo_loss(logps, counts, beta=2.5, gamma=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_retain_kl_is_kl_ref_to_model_over_labelled_positions():
    # one sequence of 3 tokens over a 2-token vocabulary; only position 0 predicts a labelled token
    logits = torch.tensor([[[0.0, 0.0], [5.0, -5.0], [0.0, 0.0]]])  # model: p = (.5, .5) at position 0
    ref_logits = torch.tensor([[[math.log(3), 0.0], [-5.0, 5.0], [0.0, 0.0]]])  # ref: p = (.75, .25)
    labels = torch.tensor([[-100, 1, -100]])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert retain_kl(logits, ref_logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert retain_kl(ref_logits, ref_logits, labels).item() == pytest.approx(0.0, abs=1e-7)


def test_sequence_log_probs_feed_the_losses_with_answer_tokens_only():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 1, 0]])  # position 0 predicts 1 (p .5), position 1 predicts 0 (p .75)
    logps, counts = sequence_log_probs(logits, labels)
    assert logps.item() == pytest.approx(math.log(0.5) + math.log(0.75), rel=1e-6)
    assert counts.item() == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_token_log_probs_equal_the_explicit_log_softmax_and_gather(dtype):
    """trl's selective_log_softmax and our sequence-at-a-time backward give the values and the gradients of the
    full fp32 log-softmax followed by a gather."""
    generator = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(3, 7, 301, generator=generator)).to(dtype).requires_grad_()  # (B, T, V)
    labels = torch.randint(0, 301, (3, 7), generator=generator)
    labels[0, :3] = -100  # a prompt
    labels[2, 5:] = -100  # padding
    weights = torch.randn(3, 6, generator=generator)  # an arbitrary loss on the log-probs
    explicit = logits[:, :-1].float().log_softmax(-1)  # (B, T-1, V), what the old code held in memory
    expected = torch.gather(explicit, 2, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    expected_loss = (expected * (labels[:, 1:] != -100) * weights).sum()
    expected_grad = torch.autograd.grad(expected_loss, logits, retain_graph=True)[0]
    logps, mask = token_log_probs(logits, labels)
    assert logps.dtype == torch.float32 and logps.shape == (3, 6)
    assert torch.equal(mask, labels[:, 1:] != -100)
    torch.testing.assert_close(logps, expected * mask, rtol=0, atol=1e-5)
    assert (logps[~mask] == 0).all()
    grad = torch.autograd.grad((logps * weights).sum(), logits)[0]
    assert grad.dtype == dtype and grad[:, -1].abs().max() == 0  # the last position predicts nothing
    torch.testing.assert_close(grad.float(), expected_grad.float(), rtol=0, atol=1e-5)
    # several ids per position (WHP's soft targets): the same, gathered K at a time
    ids = torch.randint(0, 301, (3, 6, 4), generator=generator)
    picked = gathered_log_probs(logits[:, :-1], ids)
    torch.testing.assert_close(picked, torch.gather(explicit, 2, ids), rtol=0, atol=1e-5)
    k_weights = torch.randn(3, 6, 4, generator=generator)
    torch.testing.assert_close(
        torch.autograd.grad((picked * k_weights).sum(), logits)[0].float(),
        torch.autograd.grad((torch.gather(explicit, 2, ids) * k_weights).sum(), logits)[0].float(),
        rtol=0,
        atol=1e-5,
    )


def test_rmu_activation_mse_averages_dimension_then_answer_tokens_then_batch():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [2.0, 2.0]]])  # (B=2, T=2, D=2)
    control = torch.tensor([1.0, 0.0])
    mask = torch.tensor([[True, False], [True, True]])
    # row 0: ((1-1)^2 + (2-0)^2) / 2 = 2 over its 1 token; row 1: (0.5 + 2.5) / 2 = 1.5; batch mean 1.75
    assert masked_activation_mse(hidden, control, mask).item() == pytest.approx(1.75)
    masked_changed = hidden.clone()
    masked_changed[0, 1] = 100.0  # a prompt / padding position: does not count
    assert masked_activation_mse(masked_changed, control, mask).item() == pytest.approx(1.75)
    # a row without answer tokens adds 0 (not NaN) to the batch mean
    assert masked_activation_mse(hidden, control, torch.tensor([[False, False], [True, True]])).item() == (
        pytest.approx(0.75)
    )
    # against a reference's states (RMU's retain term): 0 at the reference; a shift of 1 in both coordinates gives
    # (1^2 + 1^2) / 2 = 1 per token
    assert masked_activation_mse(hidden, hidden, mask).item() == 0.0
    assert masked_activation_mse(hidden + 1.0, hidden, mask).item() == pytest.approx(1.0)


def test_rmu_control_vector_is_seeded_nonnegative_and_has_the_steering_norm():
    u = rmu_control_vector(64, steering_coeff=20.0, seed=3)
    assert u.shape == (64,) and (u >= 0).all()
    assert u.norm().item() == pytest.approx(20.0, rel=1e-6)
    assert torch.equal(u, rmu_control_vector(64, 20.0, seed=3))
    assert not torch.equal(u, rmu_control_vector(64, 20.0, seed=4))


def test_undial_distills_toward_the_reference_with_the_label_logit_lowered():
    # one counted position: position 0 predicts label[1] = token 0; position 1 predicts a -100 label (prompt/pad)
    labels = torch.tensor([[-100, 0, -100]])
    ref = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])  # (B=1, T=3, V=3)
    student = torch.tensor([[[math.log(2), 0.0, 0.0], [5.0, -3.0, 1.0], [0.0, 0.0, 0.0]]])
    # beta = ln 2: target softmax([-ln 2, 0, 0]) = [0.2, 0.4, 0.4]; student q = [0.5, 0.25, 0.25]
    # CE = -(0.2 ln 0.5 + 0.8 ln 0.25) = 1.8 ln 2
    assert undial_loss(student, ref, labels, beta=math.log(2)).item() == pytest.approx(1.8 * math.log(2))
    # beta = 0 and the student at the reference: the reference's entropy, ln 3 for a uniform reference
    assert undial_loss(ref, ref, labels, beta=0.0).item() == pytest.approx(math.log(3))
    # the masked position's logits do not matter
    other = student.clone()
    other[0, 1] = torch.tensor([-9.0, 9.0, 0.0])
    assert undial_loss(other, ref, labels, beta=math.log(2)).item() == pytest.approx(1.8 * math.log(2))
    with pytest.raises(ValueError, match="beta >= 0"):
        undial_loss(student, ref, labels, beta=-1.0)
