"""Log-domain Sinkhorn with uniform marginals, as in OTSeg (docs/protocol.md §5; App. B), for MPS and MPSA."""

from __future__ import annotations

import math

import torch


def sinkhorn(cost: torch.Tensor, eps: float = 0.05, max_iters: int = 100, tol: float = 1e-6,
             check_every: int = 4) -> torch.Tensor:
    """Entropic optimal transport plan for `cost` with uniform marginals.

    The reference iterates potentials u [..., M], v [..., N] from 0 with kernel K = (-C + u_i + v_j) / eps:
        u <- eps * (log(1/M + 1e-8) - logsumexp_j K) + u,   then   v <- eps * (log(1/N + 1e-8) - logsumexp_i K) + v,
    stops at the first iteration whose mean |u - u_prev| (over every entry of the batch) is below `tol`, or after
    `max_iters`, returns exp(K) and differentiates through every iteration it ran.

    We run the same iterations in the algebraically equal form f = u / eps, g = v / eps, A = -C / eps:
        f <- log(1/M + 1e-8) - logsumexp_j(A + g_j),   g <- log(1/N + 1e-8) - logsumexp_i(A + f_i)
    (the +u in the reference cancels the u inside its kernel), which takes 3 tensor operations per half-step
    instead of 7. Without the reference's per-iteration `.item()` host sync: iterations run in chunks of
    `check_every`, the chunk's errors eps * mean|f - f_prev| are read back once, and the plan is built from the
    potentials of the first iteration below `tol`, so the iteration count, the plan and its gradient are the
    reference's. Iterations after that one in the chunk are wasted work whose graph is dropped. Computed in fp32
    with autocast off.

    Args:
        cost: [..., M, N]. Returns: the plan [..., M, N] (fp32); columns sum to 1/N after the last g-update and
        rows to 1/M up to the convergence tolerance.
    """
    with torch.autocast(cost.device.type, enabled=False):
        a = cost.float() / -eps
        m, n = a.shape[-2:]
        log_mu, log_nu = math.log(1.0 / m + 1e-8), math.log(1.0 / n + 1e-8)
        f = a.new_zeros(a.shape[:-1])
        g = a.new_zeros(a.shape[:-2] + (n,))
        history = [(f, g)]
        for it in range(max_iters):
            f = log_mu - torch.logsumexp(a + g.unsqueeze(-2), dim=-1)
            g = log_nu - torch.logsumexp(a + f.unsqueeze(-1), dim=-2)
            history.append((f, g))
            if len(history) == check_every + 1 or it == max_iters - 1:
                fs = torch.stack([h[0] for h in history])
                errors = eps * (fs[1:] - fs[:-1]).abs().flatten(1).mean(-1)
                converged = (errors < tol).tolist()  # one host sync per chunk
                if any(converged):
                    f, g = history[1 + converged.index(True)]
                    break
                history = history[-1:]
        return torch.exp(a + f.unsqueeze(-1) + g.unsqueeze(-2))
