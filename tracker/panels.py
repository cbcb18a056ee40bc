"""Panels: what an experiment publishes for the viewer's Feature page to draw.

The viewer knows no experiment. A replay (or a researcher's own analysis) computes what a
feature should be seen with — a map over the probe inputs, a spectrum, bars against ground
truth, a line of text — and stores it as panels; the Feature page draws the panels of the
chosen feature in order, and a plain table of its top probe examples after them.

A panel belongs to one checkpoint (run, layer, step) and to one feature, or to every feature
of that checkpoint (`feature` None: e.g. the model's WᵀW beside each feature's bars). Stored
in the `panels` table, one row per panel:

    run, layer, step, feature (NULL: every feature), position (drawing order), kind,
    spec (JSON: every field below but `values`, plus `shape`, `encoding`, `lo`, `hi`),
    data (BLOB: `values`, row-major, in `encoding`)

`encoding` is "float32" (little-endian) or "uint8": values quantised linearly so that 0 is
`lo` and 255 is `hi`, for large panels (a 113 × 113 map is 13 KB instead of 51 KB).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

PanelKind = Literal["heatmap", "bars", "note", "label"]
KINDS = ("heatmap", "bars", "note", "label")
ENCODINGS = ("float32", "uint8")


@dataclass(frozen=True)
class Panel:
    """One picture (or line of text) on the Feature page."""

    kind: PanelKind
    """"heatmap": `values` [rows, cols] as coloured cells; "bars": `values` [series,
    categories], one bar per category and series; "note": `text` alone, as markdown;
    "label": `text` alone, a short name for the feature at this checkpoint ("x3",
    "frequency 11"), which the viewer writes beside its lineage's id wherever lineages are
    listed (the lineage's latest label), not among the panels."""
    title: str = ""
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    text: str = ""
    """A note's line, or a caption under a chart."""
    x: str = ""
    """Axis titles (heatmap: columns and rows; bars: categories and values)."""
    y: str = ""
    labels: tuple[str, ...] = ()
    """Bars: the categories' names (default 0, 1, …)."""
    series: tuple[str, ...] = ()
    """Bars: one name per row of `values` (default "value")."""
    strong: tuple[bool, ...] = ()
    """Bars: categories drawn solid; the others are faded (empty: all solid)."""
    scheme: str = "viridis"
    """Heatmap: a Vega colour scheme ("redblue" for signed values, "magma", …)."""
    domain: tuple[float, float] | None = None
    """The colour range (heatmap) or value axis (bars); None: the data's."""
    ticks: int = 0
    """Heatmap: label every `ticks`-th row and column (0: every one)."""
    origin: Literal["top", "bottom"] = "top"
    """Heatmap: where row 0 is drawn ("bottom" for a map over (a, b) with a upwards)."""
    half: bool = False
    """Drawn in half the page's width, beside the next half panel."""
    encoding: Literal["float32", "uint8"] = "float32"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"panel kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"panel encoding must be one of {list(ENCODINGS)}, got {self.encoding!r}"
            )
        values = np.asarray(self.values, dtype=np.float64)
        if self.kind == "label" and not (0 < len(self.text) <= 40 and "\n" not in self.text):
            raise ValueError(
                f"a label panel needs one line of 1 to 40 characters, got {self.text!r}"
            )
        if self.kind not in ("note", "label") and (values.ndim != 2 or values.size == 0):
            raise ValueError(
                f"a {self.kind} panel ({self.title!r}) needs a non-empty 2-D array of values, "
                f"got shape {list(values.shape)}"
            )
        if not np.isfinite(values).all():
            raise ValueError(f"panel {self.title!r} holds NaN or infinite values")
        if self.kind == "bars":
            n_series, n_categories = values.shape
            for name, got, want in [
                ("labels", len(self.labels), n_categories),
                ("strong", len(self.strong), n_categories),
                ("series", len(self.series), n_series),
            ]:
                if got not in (0, want):
                    raise ValueError(
                        f"bars panel {self.title!r}: {name} has {got} entries for {want} "
                        f"{'categories' if name != 'series' else 'series'}"
                    )
        object.__setattr__(self, "values", values)


def encode(panel: Panel) -> tuple[str, bytes]:
    """The panel's spec (JSON) and data (bytes), as the `panels` table stores them."""
    spec = {k: v for k, v in asdict(panel).items() if k not in ("kind", "values")}
    values = panel.values
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    spec.update(shape=list(values.shape), lo=lo, hi=hi)
    if panel.encoding == "uint8":
        scaled = (values - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(values)
        data = np.round(scaled).astype(np.uint8).tobytes()
    else:
        data = values.astype("<f4").tobytes()
    return json.dumps(spec), data


def decode(kind: str, spec: str, data: bytes) -> Panel:
    """The inverse of `encode` (uint8 values come back quantised)."""
    fields: dict[str, Any] = json.loads(spec)
    shape, lo, hi = fields.pop("shape"), fields.pop("lo"), fields.pop("hi")
    if fields["encoding"] == "uint8":
        values = np.frombuffer(data, dtype=np.uint8).astype(np.float64) / 255 * (hi - lo) + lo
    else:
        values = np.frombuffer(data, dtype="<f4").astype(np.float64)
    for key in ("labels", "series", "strong"):
        fields[key] = tuple(fields[key])
    if fields["domain"] is not None:
        fields["domain"] = tuple(fields["domain"])
    return Panel(kind=kind, values=values.reshape(shape), **fields)  # type: ignore[arg-type]


def panel_rows(step: int, panels: dict[int | None, list[Panel]]) -> pl.DataFrame:
    """The `panels` table's rows (without run and layer) for one checkpoint's panels,
    {feature or None: panels in drawing order}. A feature's panels are drawn merged with the
    checkpoint-wide ones by position, its own first at equal positions: [note, bars] with
    [WᵀW] draws note, WᵀW, bars."""
    rows = []
    for feature, drawn in panels.items():
        for position, panel in enumerate(drawn):
            spec, data = encode(panel)
            rows.append(
                {
                    "step": step,
                    "feature": feature,
                    "position": position,
                    "kind": panel.kind,
                    "spec": spec,
                    "data": data,
                }
            )
    schema = {
        "step": pl.Int64,
        "feature": pl.Int32,
        "position": pl.Int32,
        "kind": pl.String,
        "spec": pl.String,
        "data": pl.Binary,
    }
    return pl.DataFrame(rows, schema=schema)
