"""Per-budget baselines: GRPO advantages relative to the samples that had the same thinking budget.

TRL's GRPO gives completion ``i`` of a group the advantage
``(r_i - mean(group)) / (std(group) + 1e-4)``. When a group mixes thinking budgets (anytime
rollouts' ``K`` cuts, or HBPO-style sub-groups), one group mean compares a completion cut
early with completions cut late: a thinking pass that reaches the answer gets negative
advantages at its early cuts (which fail because the cut is early, not because the
thinking is bad) and positive ones at its late cuts, and its shared thinking tokens receive
the sum, which largely cancels.

``advantage_baseline: budget`` replaces the group mean with the mean reward of the group's
completions **under the same thinking budget** (AnytimeReasoner's per-budget baseline,
arXiv 2505.13438; HBPO's intra-sub-group advantage, arXiv 2507.15844), keeping TRL's scale::

    A_i = (r_i - mean{r_j : group(j) = group(i), t_j = t_i}) / (std + 1e-4)

where ``std`` is what TRL's ``scale_rewards`` gives (``group``: the group's std,
``batch``: the batch's, ``none``: no scaling). Unscored rows (NaN rewards: grader errors,
dropped groups) are left out of every mean and std and get advantage 0, as in TRL. With one
budget per group this is exactly TRL's advantage.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["BASELINES", "budget_baseline_advantages"]

#: the values of ``advantage_baseline``
BASELINES = ("group", "budget")


def budget_baseline_advantages(rewards: Any, row_budgets: Sequence[int], group_size: int,
                               scale_rewards: str = "group") -> Any:
    """Advantages with a per-(group, budget) baseline.

    Args:
        rewards: 1-D float tensor, one (weighted, summed) reward per row of the
            generation batch, all processes, NaN where unscored.
        row_budgets: the thinking budget of each row (same length).
        group_size: GRPO ``num_generations``; rows ``[g * G, (g + 1) * G)`` are group ``g``.
        scale_rewards: TRL's ``scale_rewards``: ``group``, ``batch`` or ``none``.

    Returns:
        A tensor like ``rewards``: the advantages (0 where the reward is NaN).

    Raises:
        ValueError: lengths that do not match, or a batch that is not whole groups.
    """
    import torch
    from trl.trainer.utils import nanstd

    n = int(rewards.numel())
    if len(row_budgets) != n:
        raise ValueError(f"row_budgets has {len(row_budgets)} entries for {n} rewards; they must match row for row.")
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} rewards are not whole groups of group_size={group_size}.")
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}.")
    budgets = torch.as_tensor(list(row_budgets), device=rewards.device)
    group = torch.arange(n, device=rewards.device) // group_size
    # one cell per (group, budget): rows that share both share a baseline
    _, cell = torch.unique(torch.stack([group, budgets]), dim=1, return_inverse=True)
    ok = ~torch.isnan(rewards)
    cells = int(cell.max()) + 1
    total = torch.zeros(cells, dtype=rewards.dtype, device=rewards.device).index_add_(
        0, cell, torch.where(ok, rewards, torch.zeros_like(rewards)))
    count = torch.zeros(cells, dtype=rewards.dtype, device=rewards.device).index_add_(0, cell, ok.to(rewards.dtype))
    baseline = (total / count.clamp(min=1))[cell]
    advantages = rewards - baseline
    if scale_rewards == "group":
        std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size) if group_size > 1 \
            else torch.zeros_like(rewards)
        advantages = advantages / (std + 1e-4)
    elif scale_rewards == "batch":
        std = nanstd(rewards) if n > 1 else torch.zeros((), dtype=rewards.dtype, device=rewards.device)
        advantages = advantages / (std + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)
