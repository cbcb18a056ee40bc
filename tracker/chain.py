"""A chain of checkpoints, added in step order: pairwise matches, witnessed events across
gaps, and lineage ids.

`match` compares two neighbouring checkpoints. A chain adds what only a sequence knows: a
feature that one SAE missed while the activations still show it (a `missed` edge) is held as
*lost* for up to `MatchConfig.max_gap` checkpoints, as multi-object trackers keep a lost
track. When a later SAE finds it again, the lineage continues across the gap (an edge whose
`prev_step` is where it was last seen, with `gap` > 0) and the later "birth" is no event.
When the activations stop showing it, it dies there, witnessed. When the gap runs out while
they still show it, it dies unwitnessed (low confidence). `track` and the store's `Analyzer`
both drive a chain, so they read events the same way.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import torch
from torch import Tensor

from tracker.assign import assign_dense
from tracker.calibration import activation_rows
from tracker.checkpoint import Checkpoint, fit_checkpoint
from tracker.checks import check_steps
from tracker.config import MatchConfig, SAEConfig
from tracker.confirm import Confirmations
from tracker.links import LineageIds, Link, Lost
from tracker.match import EDGE_SCHEMA, EVENT_SCHEMA, MatchResult, match
from tracker.witness import CONTRADICTED, WITNESSED, Presence, check, event_confidence


class Chain:
    """Adds checkpoints of one layer in step order (see the module docstring)."""

    def __init__(self, config: MatchConfig | None = None) -> None:
        self.config = config or MatchConfig()
        self.ids = LineageIds(self.config)
        self.prev: Checkpoint | None = None
        self.prev_ids: dict[int, int] = {}
        self.lost: list[Lost] = []
        self.dead: list[Lost] = []
        """Features whose death the last checkpoint added witnessed (see `_refind`)."""
        self.history: list[Checkpoint] = []
        """The last max_gap + 1 checkpoints, newest (`prev`) last: a birth the activations
        contradict at `prev` is dated back through the ones before it."""
        self.confirm = Confirmations(self.config)
        self.last: Link | None = None

    def resume(
        self,
        prev: Checkpoint,
        ids: dict[int, int],
        next_id: int,
        stable_at: dict[int, int] | None = None,
        events: pl.DataFrame | None = None,
        prev_step: int | None = None,
        *,
        lost: list[Lost] | None = None,
        history: list[Checkpoint] | None = None,
        dead: list[Lost] | None = None,
    ) -> None:
        """Continue after a stored checkpoint: its lineage ids, `stable_at` (see
        `Confirmations`), its events (births there may yet be confirmed), the step before it,
        the features lost there and the checkpoints before it (`history`, oldest first)."""
        self.prev, self.prev_ids, self.ids.next_id = prev, ids, next_id
        self.lost, self.history = list(lost or []), list(history or [])
        self.dead = list(dead or [])
        self.confirm.resume(prev.step, stable_at, prev_step)
        self.last = None if events is None else Link(prev.step, ids, events=events)

    def fit(self, step: int, acts: object, config: SAEConfig) -> Link:
        """Fit checkpoint `step` on `acts` (warm-started from the previous checkpoint's SAE
        when `config.init` says so) and add it: the one fit → match → lineage step that
        `lineage.track` and the store's `Analyzer` both take."""
        (step,) = check_steps([step], "a checkpoint's step")
        if self.prev is not None and step <= self.prev.step:
            raise ValueError(f"checkpoints must come in step order: {step} after {self.prev.step}")
        previous = self.prev.sae if self.prev is not None else None
        return self.add(fit_checkpoint(step, acts, config, self.config, previous))

    def add(self, cp: Checkpoint) -> Link:
        """Add a fitted checkpoint: match it with the previous one, follow lost features,
        date and confirm events, advance the lineage ids."""
        prev = self.prev
        if prev is not None and cp.step <= prev.step:
            raise ValueError(f"checkpoints must come in step order: {cp.step} after {prev.step}")
        self.prev = cp
        if prev is not None:
            self.confirm.before[cp.step] = prev.step
        if prev is not None and self.config.max_gap > 0:
            self.history = [*self.history, prev][-(self.config.max_gap + 1) :]
        if prev is None:
            self.prev_ids = self.ids.start(cp.sae)
            self.confirm.note_stable(cp, self.prev_ids)
            self.last = Link(cp.step, self.prev_ids, checkpoint=cp)
            return self.last
        cfg = self.config
        result = match(
            prev.sae,
            cp.sae,
            cfg,
            prev.acts,
            cp.acts,
            stable_prev=prev.stable,
            stable_next=cp.stable,
        )
        edges = result.edges.with_columns(pl.lit(prev.step, pl.Int64).alias("prev_step"))
        events = result.events.with_columns(pl.lit(prev.step, pl.Int64).alias("prev_step"))
        events = self._date_births(events, cp)
        found, gap_edges = self._refind(cp, result, events, prev)
        events = events.filter(
            ~((pl.col("kind") == "birth") & pl.col("targets").list.first().is_in(list(found)))
        )
        revived = [(lost.seen.step, lost.feature) for lost in found.values() if lost.died]
        if revived and self.last is not None:  # found again, they did not die
            self.last.take_back_deaths(revived)
        ended, still_lost, lost_edges, died = self._check_lost(
            cp, {x.lineage for x in found.values()}
        )
        missed = edges.filter(pl.col("kind") == "missed")["source"].to_list()
        z_missed = _own_z(prev, missed)
        new_lost = [Lost(self.prev_ids[f], prev, f, z_missed[:, i]) for i, f in enumerate(missed)]
        if cfg.max_gap == 0:  # gaps off: a feature the SAE missed dies, unwitnessed
            ended += [self._death(lost, CONTRADICTED, 0, None) for lost in new_lost]
            edges, new_lost = edges.filter(pl.col("kind") != "missed"), []
        carried = {target: lost.lineage for target, lost in found.items()}
        ids, parents = self.ids.advance(self.prev_ids, result, cp.sae, cp.step, carried, events)
        events = self.confirm.deaths(events, self.prev_ids)
        self.confirm.note_stable(cp, ids)
        revised = self.confirm.births(self.last, cp)
        revised = self.last.events if revived and self.last else revised
        self.dead = self._dead_at(prev, events, died) if cfg.max_gap > 0 else []
        self.prev_ids, self.lost = ids, still_lost + new_lost
        self.last = Link(
            cp.step,
            ids,
            result,
            pl.concat([edges, *gap_edges, *lost_edges], how="diagonal_relaxed"),
            pl.concat([events, *ended], how="diagonal_relaxed"),
            parents,
            revised,
            cp,
        )
        return self.last

    # -- births an SAE found late ----------------------------------------------------------

    def _date_births(self, events: pl.DataFrame, cp: Checkpoint) -> pl.DataFrame:
        """A birth whose feature the previous checkpoint's activations already show (its SAE
        missed it) is dated back to the last checkpoint, within max_gap, whose activations
        do not: prev_step becomes that step, gap the checkpoints in between, and the witness
        no longer contradicts it. Older than the window, it stays contradicted."""
        late = (pl.col("kind") == "birth") & (pl.col("witness") == CONTRADICTED)
        if len(self.history) < 2 or events.filter(late).is_empty():
            return events
        born = events.filter(late)
        rows = list(born.iter_rows(named=True))
        features = [row["targets"][0] for row in rows]
        z_born = _own_z(cp, features)
        pending = list(range(len(rows)))
        for gap, older in enumerate(reversed(self.history[:-1]), start=1):
            if not pending:
                break
            # Every birth still undated, witnessed on this older checkpoint in one encode.
            ids = [features[i] for i in pending]
            here = check(cp.sae, ids, z_born[:, pending], older.acts, self.config, cp.acts)
            for k, i in enumerate(pending):
                if not here.present[k]:
                    rows[i] |= {
                        "prev_step": older.step,
                        "witness": WITNESSED,
                        "presence": float(here.strength[k]),
                        "presence_corr": float(here.corr[k]),
                        "carried": float(here.carried[k]),
                        "gap": gap,
                        "confidence": event_confidence(
                            rows[i]["match_confidence"], WITNESSED, rows[i]["seeds"], self.config
                        ),
                    }
            pending = [i for k, i in enumerate(pending) if here.present[k]]
        dated = pl.DataFrame(rows, schema=events.schema)
        return pl.concat([events.filter(~late), dated])

    def _presence_of(self, lost: list[Lost], acts: Tensor) -> list[Presence]:
        """Each lost feature's presence in `acts`, with one encode per checkpoint where
        lost features were last seen (their SAE is that checkpoint's)."""
        found: dict[int, Presence] = {}
        for seen in {id(item.seen): item.seen for item in lost}.values():
            group = [i for i, item in enumerate(lost) if item.seen is seen]
            z = torch.stack([lost[i].z for i in group], 1)
            ids = [lost[i].feature for i in group]
            here = check(seen.sae, ids, z, acts, self.config, seen.acts)
            for k, i in enumerate(group):
                found[i] = here.part(slice(k, k + 1))
        return [found[i] for i in range(len(lost))]

    # -- lost features ----------------------------------------------------------------------

    def _refind(
        self, cp: Checkpoint, result: MatchResult, events: pl.DataFrame, prev: Checkpoint
    ) -> tuple[dict[int, Lost], list[pl.DataFrame]]:
        """Births of `cp` that are a lost (or just dead) feature found again: {target: lost}
        and their continuation edges across the gap. Compared on the signal the match used."""
        births = events.filter(pl.col("kind") == "birth")
        born = [t[0] for t in births["targets"].to_list()]
        gone = self.lost + self.dead
        if not gone or not born:
            return {}, []
        rows_lost = activation_rows(torch.stack([lost.z for lost in gone], 1))
        corr = rows_lost @ activation_rows(_own_z(cp, born)).t()
        w_lost = torch.stack([lost.seen.sae.W_dec.detach().cpu()[lost.feature] for lost in gone])
        cosine = _unit(w_lost) @ _unit(cp.sae.W_dec.detach().cpu()[born]).t()
        sim = corr if result.signal == "activation" else cosine
        # A feature already present at `prev` (its birth dated back past it, or contradicted
        # there) whose encoder reads a gone feature's own pattern from `prev`'s activations
        # continues it: the model still carried it, in another direction, so the two are
        # compared on their activations whatever the signal. Only so is a death undone.
        read = rows_lost @ activation_rows(_own_z(cp, born, prev)).t()
        there = (torch.tensor(births["prev_step"].to_list()) < prev.step) | torch.tensor(
            [w == CONTRADICTED for w in births["witness"].to_list()]
        )
        moved = torch.where((read >= result.tau) & there, corr, -1.0)
        n = len(self.lost)
        sim = torch.cat([torch.maximum(sim[:n], moved[:n]), moved[n:]])
        pairs = assign_dense(sim.double().numpy(), result.tau)
        found: dict[int, Lost] = {}
        rows = []
        for i, j in zip(pairs.prev.tolist(), pairs.next.tolist(), strict=True):
            lost, target = gone[i], born[j]
            found[target] = lost
            rows.append(
                {
                    "prev_step": lost.seen.step,
                    "source": lost.feature,
                    "target": target,
                    "cosine": float(cosine[i, j]),
                    "act_corr": float(corr[i, j]),
                    "kind": "continuation",
                    "gap": lost.missed,
                }
            )
        frame = pl.DataFrame(rows, schema={**EDGE_SCHEMA, "prev_step": pl.Int64})
        return found, [frame] if rows else []

    def _dead_at(self, prev: Checkpoint, events: pl.DataFrame, died: list[Lost]) -> list[Lost]:
        """The features whose death the checkpoint just added witnessed: the next checkpoint
        may still find them again (`_refind`)."""
        gone = events.filter((pl.col("kind") == "death") & (pl.col("witness") == WITNESSED))
        features = [s[0] for s in gone["sources"]]
        z = _own_z(prev, features)
        now = [Lost(self.prev_ids[f], prev, f, z[:, i], died=True) for i, f in enumerate(features)]
        now += [replace(lost, missed=lost.missed + 1, died=True) for lost in died]
        return sorted(now, key=lambda lost: (lost.seen.step, lost.feature))  # as resume reads

    def _check_lost(
        self, cp: Checkpoint, refound: set[int]
    ) -> tuple[list[pl.DataFrame], list[Lost], list[pl.DataFrame], list[Lost]]:
        """For lost features not found again: a witnessed death where `cp`'s activations no
        longer show them, an unwitnessed one where the gap has run out, else still lost
        (another `missed` edge). Returns (death events, still lost, missed edges, the lost
        whose death was witnessed)."""
        cfg = self.config
        ended, still, edges, died = [], [], [], []
        waiting = [lost for lost in self.lost if lost.lineage not in refound]
        for lost, here in zip(waiting, self._presence_of(waiting, cp.acts), strict=True):
            if not here.present[0]:
                ended.append(self._death(lost, WITNESSED, lost.missed, here))
                died.append(lost)
            elif lost.missed >= cfg.max_gap:
                ended.append(self._death(lost, CONTRADICTED, lost.missed, here))
            else:
                lost.missed += 1
                still.append(lost)
                edges.append(
                    pl.DataFrame(
                        [
                            {
                                "prev_step": lost.seen.step,
                                "source": lost.feature,
                                "target": None,
                                "cosine": None,
                                "act_corr": float(here.corr[0]),
                                "kind": "missed",
                                "gap": lost.missed,
                            }
                        ],
                        schema={**EDGE_SCHEMA, "prev_step": pl.Int64},
                    )
                )
        return ended, still, edges, died

    def _death(self, lost: Lost, witness: str, gap: int, here: Presence | None) -> pl.DataFrame:
        """The death event of a lost feature, `gap` checkpoints after it was last seen."""
        stable = lost.seen.stable
        seeds = None if stable is None else 1 + int(bool(stable[lost.feature]))
        row: dict[str, object] = {
            "prev_step": lost.seen.step,
            "kind": "death",
            "sources": [lost.feature],
            "targets": [],
            "confidence": event_confidence(1.0, witness, seeds, self.config),
            "match_confidence": 1.0,
            "score": 0.0,
            "witness": witness,
            "presence": None if here is None else float(here.strength[0]),
            "presence_corr": None if here is None else float(here.corr[0]),
            "carried": None if here is None else float(here.carried[0]),
            "gap": gap,
            "seeds": seeds,
            "confirmed": None,
        }
        row = self.confirm.death(row, lost.lineage, lost.seen.step)
        return pl.DataFrame([row], schema={**EVENT_SCHEMA, "prev_step": pl.Int64})


def _unit(W: Tensor) -> Tensor:
    return W / W.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _own_z(cp: Checkpoint, features: list[int], on: Checkpoint | None = None) -> Tensor:
    """[n, len(features)]: the features' activations on their own checkpoint (or on `on`'s
    activations), one encode."""
    acts = (on or cp).acts
    return cp.sae.latents(acts, columns=torch.tensor(features, dtype=torch.long))
