"""Token trees: their shape, the attention a verifier gives them, and their lossless acceptance.

A chain proposal bets on one continuation; a tree proposes several per position (a draft's
top-k, the continuations of several n-gram matches) and the verifier scores every node in one
pass, each node attending to the cached prefix and its own ancestors only. Acceptance walks
from the root: at each node it draws the next token as the verifier would and moves to the
child that holds it, so the output is distributed exactly as the verifier's (SpecInfer's
multi-candidate rule, Miao et al. 2024); greedy decoding follows the argmax.
"""

from __future__ import annotations

import attrs

from ..checks import check_number


def _positive(instance, attribute: attrs.Attribute, value) -> None:
    check_number(f"tree {attribute.name}", value, low=1, integer=True)


@attrs.frozen
class TreeShape:
    """How large a tree a draft may propose per row and step.

    ``depth``: the longest root-to-leaf path (the chain lookahead γ it replaces); ``branch``:
    the most children of one node that acceptance tries; ``nodes``: the most nodes in all (the
    verifier scores ``nodes + 1`` tokens a row). A draft fills the budget where it is least sure
    (a dynamic tree, as EAGLE-2); ``nodes = depth`` with ``branch = 1`` is a chain.
    """

    depth: int = attrs.field(validator=_positive)
    branch: int = attrs.field(validator=_positive)
    nodes: int = attrs.field(validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.nodes < self.depth:
            from ..errors import ConfigError

            raise ConfigError(f"a tree of depth {self.depth} needs at least {self.depth} nodes; "
                              f"got nodes={self.nodes}")

    @classmethod
    def parse(cls, text: str) -> "TreeShape":
        """``DEPTHxBRANCH[:NODES]`` (``4x2:8``); nodes default to every node such a tree has
        when each of its first nodes branches (``depth * branch``)."""
        from ..errors import ConfigError

        head, _, nodes = str(text).partition(":")
        depth, sep, branch = head.partition("x")
        try:
            d, b = int(depth), int(branch)
            n = int(nodes) if nodes else d * b
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"a tree shape is DEPTHxBRANCH[:NODES], such as 4x2:8; got "
                              f"{text!r}")
        return cls(d, b, n)

    def __str__(self) -> str:
        return f"{self.depth}x{self.branch}:{self.nodes}"


def parse_lookahead(text: str, where: str = "lookahead"):
    """A lookahead given as text (a CLI flag, a benchmark's list): γ, an int >= 0, or a token
    tree's shape ``DEPTHxBRANCH[:NODES]`` (a :class:`TreeShape`)."""
    from ..errors import ConfigError

    if "x" in text:
        return TreeShape.parse(text)
    try:
        gamma = int(text)
    except ValueError:
        raise ConfigError(f"{where} is γ (an int >= 0) or a tree DEPTHxBRANCH[:NODES] such as "
                          f"4x2:8; got {text!r}") from None
    if gamma < 0:
        raise ConfigError(f"{where} must be >= 0; got {gamma}")
    return gamma


def with_root(proposal, pending):
    """The verifier's view of a proposal: tokens [B, 1 + N] with the pending token in column 0,
    parents [B, 1 + N] with -1 for the root, and the real columns a row (root included)."""
    import torch

    tokens = torch.cat([pending[:, None], proposal.tokens.to(pending.device)], 1)
    parents = torch.cat([torch.full_like(pending[:, None], -1),
                         proposal.parents.to(pending.device)], 1)
    return tokens, parents, proposal.lengths.to(pending.device) + 1


def ancestors(parents):
    """bool [B, K, K]: ``out[b, i, j]`` when column j is column i or one of its ancestors, the
    attention a tree node is allowed among the new columns. ``parents`` as in ``score_tree``.

    Computed by squaring reachability (a node reaches itself and its parent; after t squarings,
    every ancestor up to 2^t levels up): ceil(log2 K) batched products with no value read on
    the host, so a verifier can build it inside a captured CUDA graph. A padding column that
    hangs on a cycle reaches only columns, never more than K of them."""
    import torch

    batch, k = parents.shape
    cols = torch.arange(k, device=parents.device)
    reach = (parents[:, :, None] == cols) | (cols[:, None] == cols)
    for _ in range((k - 1).bit_length()):  # 2^t >= k > the longest path's k - 1 steps
        r = reach.float()  # 0/1 products: their sums count paths exactly
        reach = torch.bmm(r, r) > 0
    return reach


def depths(parents):
    """long [B, K]: each column's depth (the root 0), its position after the cached prefix."""
    return ancestors(parents).sum(-1) - 1


def accept_tree(p, tokens, parents, lengths, shape: TreeShape, q=None, generator=None,
                greedy: bool = False):
    """Walk each row's tree from the root, keeping the children the verifier's draw lands on.

    Args:
        p: float [B, 1 + N, V], the verifier's probabilities after :func:`warp` at the root
            and at every node (raw logits suffice under ``greedy``).
        tokens, parents, lengths, q: the :class:`~thrifty.protocols.TreeProposal`'s fields.
        shape: the tree's shape (its depth bounds the walk, its branch the children tried).
        generator: torch.Generator for the uniform draws and the residual samples.
        greedy: follow the child equal to the argmax (no randomness).

    At a node whose children x_1, x_2, ... were drawn from q_1, q_2, ... (point masses for
    deterministic candidates), child k is accepted with probability min(1, r(x_k) / q_k(x_k)),
    r starting as the verifier's p and becoming norm(max(0, r - q_k)) after each rejection;
    when every child is rejected the next token is drawn from r. Each step then emits a token
    distributed as p, whatever the children are: the output is the verifier's.

    Returns:
        (path long [B, depth + 1], kept long [B], next_tokens long [B]): row b kept the nodes
        ``path[b, :kept[b]]`` (node indices, 0 = the root) and then ``next_tokens[b]``.
    """
    import torch

    if greedy:
        return _greedy_walk(p, tokens, parents, lengths, shape.depth)
    batch, n = tokens.shape
    device = p.device
    real = torch.arange(n, device=device)[None, :] < lengths[:, None]
    cur = torch.zeros(batch, dtype=torch.long, device=device)  # the node each row stands on
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    nxt = torch.zeros(batch, dtype=torch.long, device=device)
    path = [cur]
    for _ in range(shape.depth + 1):  # the last round finds no children and emits the bonus
        children = real & (parents == cur[:, None]) & alive[:, None]
        at = p[torch.arange(batch, device=device), cur]
        found, child, nxt = _sample_children(at.float(), children, tokens, q, shape.branch,
                                             alive, nxt, generator)
        cur = torch.where(alive & found, child + 1, cur)
        alive = alive & found
        path.append(torch.where(alive, cur, torch.zeros_like(cur)))
    kept = 1 + torch.stack(path[1:], 1).ne(0).long().sum(1)
    return torch.stack(path, 1)[:, : shape.depth + 1], kept, nxt


def _greedy_walk(p, tokens, parents, lengths, depth: int):
    """:func:`accept_tree` under greedy decoding, all nodes at once: a node holds if its token
    is the verifier's argmax at its parent and every ancestor holds; the row keeps the deepest
    node that holds (the first column among equals) and its root-to-node path. A walk of the
    tree level by level would launch a dozen small kernels a level on the host's critical
    path; this is a fixed few (ancestry by :func:`ancestors`), whatever the depth."""
    import torch

    batch, n = tokens.shape
    cols = torch.arange(n + 1, device=p.device)
    target = p.argmax(-1)  # [B, 1 + N]: the verifier's token after the root and each node
    holds = torch.cat([torch.ones_like(target[:, :1], dtype=torch.bool),
                       (cols[None, 1:] <= lengths[:, None])
                       & (tokens == target.gather(1, parents.clamp(min=0)))], 1)
    reach = ancestors(torch.cat([torch.full_like(parents[:, :1], -1), parents], 1))
    kept_ok = ~(reach & ~holds[:, None, :]).any(-1)  # the node and all its ancestors hold
    level = reach.sum(-1) - 1
    best = torch.where(kept_ok, level * (n + 1) + n - cols, -1).argmax(1)
    chosen = reach[torch.arange(batch, device=p.device), best]  # best's ancestors and itself
    at = chosen[:, None, :] & (level[:, None, :]
                               == torch.arange(depth + 1, device=p.device)[None, :, None])
    path = at.long().argmax(-1)  # [B, depth + 1]: the node of each level (0: none, the root)
    return path, level.gather(1, best[:, None])[:, 0] + 1, target.gather(1, best[:, None])[:, 0]


def _sample_children(r, children, tokens, q, branch: int, alive, nxt, generator):
    """One node of every live row: try its children in column order against the residual r
    (see :func:`accept_tree`). Returns (found, child column, next tokens)."""
    import torch

    from .sampling import sample

    batch, n = tokens.shape
    rows = torch.arange(batch, device=r.device)
    rank = children.long().cumsum(1) * children  # 1 for the first child of a row, 2, ...
    found = torch.zeros(batch, dtype=torch.bool, device=r.device)
    child = torch.zeros(batch, dtype=torch.long, device=r.device)
    for k in range(1, branch + 1):
        is_k = rank == k
        has = is_k.any(1) & ~found
        col = is_k.long().argmax(1)
        x = tokens[rows, col]
        if q is None:
            qk = torch.zeros_like(r)
            qk[rows, x] = 1.0
        else:
            qk = q[rows, col].float()
        u = torch.rand(batch, generator=generator, device=r.device)
        take = has & (u * qk[rows, x] <= r[rows, x])
        found, child = found | take, torch.where(take, col, child)
        diff = (r - qk).clamp(min=0)
        mass = diff.sum(-1, keepdim=True)
        # a zero residual only arises from rounding when r == q_k; r itself is then the answer
        residual = torch.where(mass > 0, diff / mass.clamp(min=1e-30), r)
        r = torch.where((has & ~take)[:, None], residual, r)
    drawn = sample(r, generator)
    return found, child, torch.where(alive & ~found, drawn, nxt)


def kept_on_path(path, lengths, tokens, on_chain) -> tuple[list[list[int]], list[int]]:
    """What a draft that grew a :func:`sibling_tree` keeps after :func:`accept_tree`'s
    ``path``: per row, the tokens of the kept nodes after the root, and how many of them are
    chain nodes (the path runs down the chain and may end on a sibling leaf, so they are a prefix
    of its chain: what the draft's cache holds). ``tokens``/``on_chain``: the proposal's columns
    per row (nested lists or arrays)."""
    kept, chain = [], []
    for b, (nodes, m) in enumerate(zip(path.tolist(), lengths.tolist())):
        cols = [j - 1 for j in nodes[1:m]]
        kept.append([int(tokens[b][c]) for c in cols])
        chain.append(sum(bool(on_chain[b][c]) for c in cols))
    return kept, chain


def sibling_tree(chain, probs, shape: TreeShape, sampled: bool):
    """A draft's chain with its runners-up as leaf siblings: a dynamic tree (EAGLE-2) that the
    draft grows without attending over a tree itself, since it only ever runs its chain.

    Args:
        chain: long [B, D], the draft's chain (D = ``shape.depth``): token d was picked from
            ``probs[:, d]`` after tokens 0..d-1.
        probs: float [B, D, V], the draft's distribution at each depth (softmax of its logits
            under greedy decoding; the q the chain was sampled from otherwise).
        sampled: the chain was sampled from ``probs``, which is then reported as its q.

    The siblings at depth d are the likeliest tokens of ``probs[:, d]`` besides the chain's,
    children of chain node d - 1 (alternatives at the chain token's position), at most
    ``branch - 1`` of them. The ``nodes - depth`` leaves of the budget go to the siblings most
    likely to be kept by the draft's own estimate: the probability of reaching their parent
    (the product of the chain's probabilities above) times their own, so they gather where the
    draft is least sure of its chain. A sibling is a deterministic candidate: after its chain
    node is rejected it is a fixed function of what was drawn, a point mass (a one-hot q row
    when the chain is sampled), which keeps the acceptance exact. Pure tensor code with fixed
    shapes and no host synchronisation, so it runs inside a captured CUDA graph.

    Returns:
        (TreeProposal with ``shape.nodes`` columns, per depth the chain node then its siblings;
        on_chain bool [B, nodes], which columns are chain nodes).
    """
    import torch

    from ..protocols import TreeProposal
    from .topk import top_k

    batch, depth = chain.shape
    vocab, device = probs.shape[-1], chain.device
    slots = min(shape.branch - 1, vocab - 1)  # sibling slots a depth
    extra = min(shape.nodes - depth, depth * slots)
    conf = probs.gather(-1, chain[..., None])  # [B, D, 1]
    others = probs.scatter(-1, chain[..., None], -1.0)
    sib_p, sib_tok = top_k(others, slots)  # [B, D, slots]
    reach = torch.cat([conf.new_ones(batch, 1), conf[:, :-1, 0]], 1).cumprod(1)
    value = (reach[..., None] * sib_p).flatten(1)
    chosen = torch.zeros_like(value, dtype=torch.bool)
    chosen.scatter_(1, value.topk(extra, 1).indices, True)
    keep = torch.cat([torch.ones(batch, depth, 1, dtype=torch.bool, device=device),
                      chosen.view(batch, depth, slots)], 2)  # [B, D, 1 + slots]
    col = keep.flatten(1).long().cumsum(1) - 1
    dest = torch.where(keep.flatten(1), col, shape.nodes)  # dropped slots land past the end
    chain_node = col.view(batch, depth, 1 + slots)[:, :, 0] + 1  # node index of each chain node
    parent = torch.cat([torch.zeros_like(chain_node[:, :1]), chain_node[:, :-1]], 1)
    grid = {"tokens": torch.cat([chain[..., None], sib_tok], 2),
            "parents": parent[..., None].expand(-1, -1, 1 + slots),
            "on_chain": (torch.arange(1 + slots, device=device) == 0).expand_as(keep)}
    out = {}
    for name, values in grid.items():
        flat = torch.zeros(batch, shape.nodes + 1, dtype=values.dtype, device=device)
        out[name] = flat.scatter_(1, dest, values.flatten(1))[:, :-1]
    q = None
    if sampled:
        rows = torch.cat([probs[:, :, None], torch.nn.functional.one_hot(
            sib_tok, vocab).to(probs.dtype)], 2).flatten(1, 2)  # [B, D * (1 + slots), V]
        q = probs.new_zeros(batch, shape.nodes + 1, vocab).scatter_(
            1, dest[..., None].expand(-1, -1, vocab), rows)[:, :-1]
    lengths = torch.full((batch,), depth + extra, dtype=torch.long, device=device)
    return TreeProposal(out["tokens"], out["parents"], lengths, q), out["on_chain"]
