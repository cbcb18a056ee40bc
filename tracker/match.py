"""Match the features of two checkpoints and read the matches as events.

Features are compared on one similarity: the cosine of their unit decoder rows, or, where
decoder cosine is no better than chance (few dimensions), the correlation of their
activations over the shared probe set (`MatchConfig.signal`). Splits and merges are found
first (a parent rebuilt by two or more children, or the mirror), then the remaining features
are assigned one-to-one (continuations), and what is left is born or dies.
See README "Events" for the definitions a researcher can check.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
from torch import Tensor

from tracker.assign import Neighbours, assign_dense, assign_sparse, neighbours
from tracker.calibration import Chance, chance_cosine, resolve_signal
from tracker.config import MatchConfig
from tracker.results import EDGE_SCHEMA, EVENT_SCHEMA, Edge, Event, MatchResult
from tracker.sae import SAE
from tracker.side import Side, side
from tracker.splits import candidates
from tracker.witness import (
    NO_VERDICT,
    Presence,
    Verdict,
    act_corr,
    check,
    containment,
    event_confidence,
    verdict,
)

log = logging.getLogger(__name__)


def match(
    sae_prev: SAE,
    sae_next: SAE,
    config: MatchConfig | None = None,
    acts_prev: Tensor | None = None,
    acts_next: Tensor | None = None,
    *,
    stable_prev: Tensor | None = None,
    stable_next: Tensor | None = None,
) -> MatchResult:
    """Edges and events between the features of two consecutive checkpoints' SAEs.

    Args:
        sae_prev, sae_next: the two SAEs; features that never fired on their probe set
            (`SAE.frequency`) are dead and take no part.
        config: thresholds; `MatchConfig()` by default.
        acts_prev, acts_next: the shared probe set's activations [n, d] at each checkpoint:
            enables activation correlation on edges and the support witness for splits/merges.
        stable_prev, stable_next: bool [d_sae] per SAE: features another seed also finds.
            Events involving an unstable feature get at most `unstable_confidence`.

    Raises:
        ValueError: decoders of different widths, NaN in a decoder, activations of the
            wrong shape or different probe sizes.
    """
    cfg = config or MatchConfig()
    if sae_prev.d != sae_next.d:
        raise ValueError(
            f"SAEs have different widths: sae_prev d={sae_prev.d}, sae_next d={sae_next.d}"
        )
    if (acts_prev is None) != (acts_next is None):
        raise ValueError("give both acts_prev and acts_next, or neither")
    if acts_prev is not None and acts_next is not None and acts_prev.shape[0] != acts_next.shape[0]:
        raise ValueError(
            f"acts_prev and acts_next must hold the same probe inputs, got "
            f"{acts_prev.shape[0]} and {acts_next.shape[0]} rows"
        )
    prev = side(sae_prev, "sae_prev", cfg, acts_prev, stable_prev)
    nxt = side(sae_next, "sae_next", cfg, acts_next, stable_next)
    width = max(len(prev.ids), len(nxt.ids))
    chance = chance_cosine(sae_prev.d, width, cfg.chance_quantile)
    signal = resolve_signal(cfg, sae_prev.d, width, acts_prev is not None)
    if signal == "activation":
        prev, nxt = prev.on_activations(), nxt.on_activations()
        # A random dictionary in the probe's dimensions (capped: beyond a few thousand the
        # chance level is ~0 anyway).
        chance = chance_cosine(min(prev.S.shape[1], 4096), width, cfg.chance_quantile)
    tau = max(cfg.tau_match, chance.quantile)
    return _Matcher(cfg, prev, nxt, tau, chance, signal).run()


class _Matcher:
    def __init__(
        self, cfg: MatchConfig, prev: Side, nxt: Side, tau: float, chance: Chance, signal: str
    ):
        self.cfg, self.prev, self.nxt, self.tau, self.chance = cfg, prev, nxt, tau, chance
        self.signal = signal
        self.empty = len(prev.ids) == 0 or len(nxt.ids) == 0
        self.nb: Neighbours | None = (
            None if self.empty else neighbours(prev.S, nxt.S, cfg.candidates)
        )
        self.cand_min = max(cfg.candidate_min_cos, chance.quantile)
        self.edges: list[Edge] = []
        self.events: list[Event] = []

    def run(self) -> MatchResult:
        used_prev = np.zeros(len(self.prev.ids), bool)
        used_next = np.zeros(len(self.nxt.ids), bool)
        if not self.empty:
            self._splits_and_merges(used_prev, used_next)
            self._continuations(~used_prev, ~used_next, used_prev, used_next)
        self._births_and_deaths(used_prev, used_next)
        note = ""
        if self.empty:  # whatever is live on the other side appears from nothing or vanishes
            note = f"{'sae_prev' if len(self.prev.ids) == 0 else 'sae_next'} has no live features"
        return self._result(note)

    # -- the activation witness -----------------------------------------------------------

    def _presence(self, side: Side, rows: list[int], other: Side) -> Presence | None:
        """Features `rows` of `side`, run on the other side's activations."""
        if side.codes is None or other.acts is None:
            return None
        ids, z = side.ids[rows].tolist(), side.codes.z[:, rows]
        return check(side.sae, ids, z, other.acts, self.cfg, acts_own=side.acts)

    def _witness(self, side: Side, rows: list[int], other: Side) -> Verdict:
        """(witness, presence, corr, carried) of an event whose features `rows` of `side`
        should be absent from `other`'s activations (see `witness.verdict`)."""
        found = self._presence(side, rows, other)
        return NO_VERDICT if found is None else verdict(found)

    def _event(self, kind: str, ps: list[int], ns: list[int], conf: float, score: float) -> None:
        """Record an event with its evidence: the activation witness (split children and
        births should be absent before; merge parents and deaths after) and the seeds."""
        if kind in ("split", "birth"):
            witness, strength, corr, carried = self._witness(self.nxt, ns, self.prev)
        else:
            witness, strength, corr, carried = self._witness(self.prev, ps, self.nxt)
        sides = (self.prev.seeds(ps) if ps else None, self.nxt.seeds(ns) if ns else None)
        known = [s for s in sides if s is not None]
        seeds = min(known) if known else None
        self.events.append(
            Event(
                kind,
                ps,
                ns,
                event_confidence(conf, witness, seeds, self.cfg),
                conf,
                score,
                witness,
                None if witness is None else strength,
                None if witness is None else corr,
                None if witness is None else carried,
                seeds,
            )
        )

    # -- splits and merges ---------------------------------------------------------------

    def _splits_and_merges(self, used_prev: np.ndarray, used_next: np.ndarray) -> None:
        assert self.nb is not None
        found = candidates(self.prev.S, self.nxt.S, self.nb, self.cfg, self.cand_min)
        for kind, parent, parts, gain in found:
            ps, ns = ([parent], parts) if kind == "split" else (parts, [parent])
            if used_prev[ps].any() or used_next[ns].any():
                continue
            used_prev[ps], used_next[ns] = True, True
            witness = self._containment_ok(kind, ps, ns)
            conf = min(1.0, gain / (2 * self.cfg.split_min_gain)) * (1.0 if witness else 0.4)
            self._event(kind, ps, ns, conf, gain)
            self.edges += [Edge(p, n, kind) for p in ps for n in ns]

    def _containment_ok(self, kind: str, ps: list[int], ns: list[int]) -> bool:
        """Split children fire inside their parent's support; merge parents inside the
        child's. Without activations there is no witness to object."""
        if self.prev.codes is None or self.nxt.codes is None:
            return True
        if kind == "split":
            share = containment(self.nxt.codes, ns, self.prev.codes, ps[0])
        else:
            share = containment(self.prev.codes, ps, self.nxt.codes, ns[0])
        return bool((share >= self.cfg.min_containment).all())

    # -- continuations, births and deaths -----------------------------------------------

    def _continuations(self, free_prev, free_next, used_prev, used_next) -> None:
        rows, cols = np.flatnonzero(free_prev), np.flatnonzero(free_next)
        if max(len(self.prev.ids), len(self.nxt.ids)) <= self.cfg.hungarian_max:
            cos = (self.prev.S[rows] @ self.nxt.S[cols].t()).double().numpy()
            found = assign_dense(cos, self.tau)
            pairs = zip(rows[found.prev], cols[found.next], strict=True)
        else:
            assert self.nb is not None
            found = assign_sparse(
                self.nb,
                len(self.prev.ids),
                len(self.nxt.ids),
                self.tau,
                free_prev=free_prev,
                free_next=free_next,
            )
            pairs = zip(found.prev, found.next, strict=True)
        for p, n in pairs:
            used_prev[p], used_next[n] = True, True
            self.edges.append(Edge(int(p), int(n), "continuation"))

    def _births_and_deaths(self, used_prev: np.ndarray, used_next: np.ndarray) -> None:
        """What nothing explains is born or dies, unless the activations say that a dying
        feature is still there: then the later SAE missed it (a `missed` edge)."""
        dying = np.flatnonzero(~used_prev).tolist()
        found = self._presence(self.prev, dying, self.nxt)
        if found is not None:
            for row, present, corr in zip(dying, found.present, found.corr, strict=True):
                if present:
                    self.edges.append(Edge(row, None, "missed", float(corr)))
            dying = [row for row, present in zip(dying, found.present, strict=True) if not present]
        for kind, rows in (("death", dying), ("birth", np.flatnonzero(~used_next).tolist())):
            for row in rows:
                best, conf = self._unexplained_confidence(kind, row)
                ps, ns = ([row], []) if kind == "death" else ([], [row])
                self._event(kind, ps, ns, conf, best)

    def _unexplained_confidence(self, kind: str, row: int) -> tuple[float, float]:
        """(best similarity to the other side, confidence) of a birth or death: it ramps from
        0 at a best similarity of tau to 1 at tau - margin."""
        if self.nb is None:
            return 0.0, 1.0
        best_sim = self.nb.of_prev_cos if kind == "death" else self.nb.of_next_cos
        best = float(best_sim[row, 0])
        conf = float(np.clip((self.tau - best) / max(self.cfg.margin, 1e-6), 0.0, 1.0))
        return best, conf * self._activation_penalty(kind, row)

    def _activation_penalty(self, kind: str, row: int) -> float:
        """A born (dying) feature whose activations track one of its neighbours' on the
        shared probe set is a continuation in disguise: lower the event's confidence."""
        if self.signal == "activation" or self.prev.codes is None or self.nxt.codes is None:
            return 1.0  # with the activation signal, the best similarity already said so
        assert self.nb is not None
        if kind == "birth":
            pairs = [(int(p), row) for p in self.nb.of_next[row, :3]]
        else:
            pairs = [(row, int(n)) for n in self.nb.of_prev[row, :3]]
        corr = act_corr(self.prev.codes, self.nxt.codes, pairs)
        return 0.25 if np.nanmax(corr, initial=0.0) >= self.cfg.tau_match else 1.0

    # -- output ---------------------------------------------------------------------------

    def _result(self, note: str) -> MatchResult:
        pi, ni = self.prev.ids, self.nxt.ids
        pairs = [(e.prev, e.next) for e in self.edges if e.next is not None]
        corr: dict[tuple[int, int], float | None] = {}
        if self.prev.codes is not None and self.nxt.codes is not None:
            values = act_corr(self.prev.codes, self.nxt.codes, pairs)
            corr = {
                pair: None if np.isnan(v) else float(v)
                for pair, v in zip(pairs, values, strict=True)
            }
        rows = [
            (
                int(pi[e.prev]),
                int(ni[e.next]),
                float(self.prev.W[e.prev] @ self.nxt.W[e.next]),
                corr.get((e.prev, e.next)),
                e.kind,
            )
            if e.next is not None
            else (int(pi[e.prev]), None, None, e.corr, e.kind)
            for e in self.edges
        ]
        edges = pl.DataFrame(
            [(*row, 1 if row[4] == "missed" else 0) for row in rows],
            schema=EDGE_SCHEMA,
            orient="row",
        )
        events = pl.DataFrame(
            {
                "kind": [e.kind for e in self.events],
                "sources": [sorted(int(pi[p]) for p in e.prev) for e in self.events],
                "targets": [sorted(int(ni[n]) for n in e.next) for e in self.events],
                "confidence": [e.confidence for e in self.events],
                "match_confidence": [e.match_confidence for e in self.events],
                "score": [e.score for e in self.events],
                "witness": [e.witness for e in self.events],
                "presence": [e.presence for e in self.events],
                "presence_corr": [e.presence_corr for e in self.events],
                "carried": [e.carried for e in self.events],
                "gap": [0] * len(self.events),
                "seeds": [e.seeds for e in self.events],
                "confirmed": [None] * len(self.events),
            },
            schema=EVENT_SCHEMA,
        )
        return MatchResult(edges, events, self.tau, self.chance, note, self.signal)
