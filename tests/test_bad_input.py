"""Bad input, one case per row of the README's bad-input table: each gives one exception (or
one CLI line and exit 2) that names the problem, and writes nothing."""

import json
import re
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import duckdb
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tiny import TinyNet

from tracker import FeatureTracker, MatchConfig, SAEConfig
from tracker.activations import load_activation_file
from tracker.capture import select
from tracker.cli import main
from tracker.lineage import track
from tracker.pipeline import Analyzer, analyze, fit_run
from tracker.posthoc import capture_checkpoints
from tracker.reader import open_db
from tracker.schedule import Schedule
from tracker.store import Writer
from tracker.text import CharTokenizer, text_probe

README = Path(__file__).resolve().parent.parent / "README.md"
X = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def file_with(tmp: Path, name: str, write: Callable[[Path], object]) -> Path:
    path = tmp / name
    write(path)
    return path


def run_dir_with(tmp: Path, manifest: str) -> Path:
    (tmp / "rd").mkdir()
    (tmp / "rd" / "run.json").write_text(manifest)
    return tmp / "rd"


def closed_port() -> str:
    """host:port where nothing listens (a port the system just handed out and took back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def sqlite_file(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x INT)")
    con.commit()
    con.close()


def duckdb_file(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE mine (x INT)")
    con.close()


def old_version(path: Path) -> None:
    Writer(path)
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.close()


def tracker(**kwargs: object) -> FeatureTracker:
    args: dict[str, object] = {"layers": ["body.0"], "probe": X, "schedule": [0]}
    return FeatureTracker(**{**args, **kwargs})  # type: ignore[arg-type]


OTHER = {"head.weight": torch.zeros(2, 2)}


def tiny_state(path: Path) -> None:
    torch.save(TinyNet().state_dict(), path)


def not_a_model() -> str:
    return "a model"


def capture(tmp: Path, source: Path, build: object = None) -> object:
    """`tracker capture` of `source` into tmp/runs, with TinyNet unless told."""
    return capture_checkpoints(source, build or TinyNet, ["body.0"], X, "r", tmp / "runs")


def out_of_order(tmp: Path) -> None:
    analyzer = Analyzer(Writer(tmp / "o.duckdb"), "r", "L", SAEConfig(d_sae=16, k=2, steps=20))
    analyzer.add(5, X)
    analyzer.add(2, X)


class Case(NamedTuple):
    input: str
    """What is wrong, as the README's table says it."""
    act: Callable[[Path], object]
    error: type[Exception]
    message: str
    """A regular expression the one-line message must match."""


CASES = [
    # activation files and directories
    Case(
        "activation file that does not exist",
        lambda t: load_activation_file(t / "7.npy"),
        FileNotFoundError,
        r"activation file .*7.npy does not exist",
    ),
    Case(
        "activation file of an unknown type (.csv)",
        lambda t: load_activation_file(file_with(t, "7.csv", lambda p: p.write_text("1,2"))),
        ValueError,
        r"7.csv: unknown activation file type '.csv', expected one of",
    ),
    Case(
        ".pt file whose pickle would run code",
        lambda t: load_activation_file(
            file_with(t, "7.pt", lambda p: torch.save({"activations": Evil()}, p))
        ),
        ValueError,
        r"7.pt: not plain tensors: loading it would run code \(.*print\); save the",
    ),
    Case(
        ".npy file of strings",
        lambda t: load_activation_file(
            file_with(t, "7.npy", lambda p: np.save(p, np.array(["a", "b"])))
        ),
        ValueError,
        r"7.npy: cannot read activations \(can't convert np.ndarray of type numpy.str_",
    ),
    Case(
        ".safetensors file without an `activations` tensor",
        lambda t: load_activation_file(
            file_with(t, "7.safetensors", lambda p: save_file({"x": X}, str(p)))
        ),
        ValueError,
        r"7.safetensors: expected a tensor named 'activations', found \['x'\]",
    ),
    Case(
        ".safetensors file of random bytes",
        lambda t: load_activation_file(
            file_with(t, "7.safetensors", lambda p: p.write_bytes(bytes(range(256)) * 4))
        ),
        ValueError,
        r"7.safetensors: cannot read activations \(",
    ),
    Case(
        "activations holding NaN",
        lambda t: track({0: X.clone().index_fill_(0, torch.tensor([3]), float("nan"))}),
        ValueError,
        r"activations at step 0 holds NaN values \(first at row 3, column 0\)",
    ),
    Case(
        "activations of one dimension",
        lambda t: track({0: X[:, 0]}),
        ValueError,
        r"activations at step 0 must be 2-D \[n, d\], got shape \(64,\)",
    ),
    Case(
        "activations that are all the same row",
        lambda t: track({0: torch.ones(10, 4)}),
        ValueError,
        r"activations at step 0 has zero variance: all 10 rows are identical",
    ),
    Case(
        "a float step (1.5) as a mapping key",
        lambda t: analyze({1.5: X, 2: X}, t / "f.duckdb", "r"),
        ValueError,
        r"the mapping's keys \(steps\) must be non-negative integers, got 1.5",
    ),
    Case(
        "checkpoints added out of step order",
        out_of_order,
        ValueError,
        r"checkpoints must come in step order: 2 after 5",
    ),
    Case(
        "activation directory that does not exist",
        lambda t: analyze(t / "nowhere", t / "a.duckdb", "r"),
        FileNotFoundError,
        r"activation directory .*nowhere does not exist",
    ),
    Case(
        "activation directory without activation files",
        lambda t: analyze(t, t / "a.duckdb", "r"),
        ValueError,
        r"holds no activation files \(<step>.npy, <step>.safetensors or <layer>/<step>.\*\)",
    ),
    Case(
        "one step stored twice (3.npy and 3.pt)",
        lambda t: (
            np.save(t / "3.npy", X.numpy()),
            torch.save(X, t / "3.pt"),
            analyze(t, t / "a.duckdb", "r"),
        ),
        ValueError,
        r"step 3 of layer '' is stored twice",
    ),
    # lineage databases
    Case(
        "database that does not exist",
        lambda t: open_db(t / "none.duckdb"),
        FileNotFoundError,
        r"database .*none.duckdb does not exist",
    ),
    Case(
        "a directory as the database",
        lambda t: Writer(t),
        ValueError,
        r"is a directory, not a lineage database",
    ),
    Case(
        "an empty file as the database",
        lambda t: Writer(file_with(t, "e.duckdb", lambda p: p.write_bytes(b""))),
        ValueError,
        r"e.duckdb is an empty file, not a lineage database",
    ),
    Case(
        "a text file as the database",
        lambda t: open_db(file_with(t, "t.duckdb", lambda p: p.write_text("step,x\n1,2\n"))),
        ValueError,
        r"t.duckdb is not a DuckDB file, not a lineage database",
    ),
    Case(
        "a SQLite file as the database",
        lambda t: Writer(file_with(t, "s.duckdb", sqlite_file)),
        ValueError,
        r"s.duckdb is not a DuckDB file, not a lineage database",
    ),
    Case(
        "another tool's DuckDB file",
        lambda t: Writer(file_with(t, "d.duckdb", duckdb_file)),
        ValueError,
        r"d.duckdb is a DuckDB file but not a lineage database \(no meta table\)",
    ),
    Case(
        "a lineage database of an older schema",
        lambda t: open_db(file_with(t, "v.duckdb", old_version)),
        ValueError,
        r"has lineage schema version 2; this tracker reads version 5: re-run `tracker analyze`",
    ),
    # run directories
    Case(
        "`tracker fit` on a directory without run.json",
        lambda t: fit_run(t),
        FileNotFoundError,
        r"is not a run directory \(no run.json\)",
    ),
    Case(
        "run.json that is not valid JSON",
        lambda t: fit_run(run_dir_with(t, '{"run": "x"')),
        ValueError,
        r"run.json is not valid JSON \(Expecting ',' delimiter",
    ),
    Case(
        "run.json that is not an object",
        lambda t: fit_run(run_dir_with(t, "[1, 2]")),
        ValueError,
        r"run.json must hold a JSON object, found list",
    ),
    Case(
        "run.json missing a key",
        lambda t: fit_run(run_dir_with(t, json.dumps({"run": "x", "n_probe": 5}))),
        ValueError,
        r"run.json: 'layers' is missing",
    ),
    Case(
        "run.json with a key of the wrong type",
        lambda t: fit_run(run_dir_with(t, json.dumps({"run": 3, "n_probe": 5, "layers": {}}))),
        ValueError,
        r"run.json: 'run' must be a string, found 3",
    ),
    # the callback's arguments and the model
    Case(
        "schedule 3.5",
        lambda t: Schedule.parse(3.5),  # type: ignore[arg-type]
        ValueError,
        r"schedule must be an int, 'every:N', 'log:N' or a non-empty list of steps, got 3.5",
    ),
    Case(
        "schedule None",
        lambda t: tracker(schedule=None),
        ValueError,
        r"schedule must be an int, 'every:N', 'log:N' or a non-empty list of steps, got None",
    ),
    Case(
        "schedule [1, 2.5]",
        lambda t: tracker(schedule=[1, 2.5]),
        ValueError,
        r"schedule steps must be non-negative integers, got 2.5",
    ),
    Case(
        "schedule 'every:0'",
        lambda t: tracker(schedule="every:0"),
        ValueError,
        r"schedule must be 'every:N' or 'log:N' with N >= 1, got 'every:0'",
    ),
    Case(
        "a layer name that is a path (/tmp/x)",
        lambda t: tracker(layers=["/tmp/x"]),
        ValueError,
        r"layer name must be a module name \(no '/', .* or '..'\), got '/tmp/x'",
    ),
    Case(
        "a run name with a '/'",
        lambda t: tracker(run="a/b"),
        ValueError,
        r"run must be a plain name \(no '/'\), got 'a/b'",
    ),
    Case(
        "fit mode 'later'",
        lambda t: tracker(fit="later"),
        ValueError,
        r"fit must be 'inline', 'background' or 'defer', got 'later'",
    ),
    Case(
        "a watched module that returns an empty tuple",
        lambda t: select((), "flatten", "body.0"),
        ValueError,
        r"module 'body.0' returned an empty tuple",
    ),
    Case(
        "a watched module that returns a scalar",
        lambda t: select(torch.tensor(1.0), "flatten", "body.0"),
        ValueError,
        r"module 'body.0' returned a scalar, not a \[batch, ...\] tensor",
    ),
    # a finished run's checkpoints (`tracker capture`)
    Case(
        "a checkpoint whose step cannot be read from its name",
        lambda t: capture(t, file_with(t, "final.pt", lambda p: torch.save({}, p))),
        ValueError,
        r"cannot read the step of .*final.pt: name it step<N>, step=<N>, checkpoint-<N> or <N>",
    ),
    Case(
        "a checkpoint holding pickled objects",
        lambda t: capture(t, file_with(t, "step5.pt", lambda p: torch.save({"w": Evil()}, p))),
        ValueError,
        r"step5.pt: not plain tensors: loading it would run code \(.*print\); save the model's",
    ),
    Case(
        "a checkpoint whose weights do not fit the model",
        lambda t: capture(t, file_with(t, "step5.pt", lambda p: torch.save(OTHER, p))),
        ValueError,
        r"step5.pt: its weights do not fit the model \(first missing key: body.0.weight; "
        r"first unexpected key: head.weight\)",
    ),
    Case(
        "a model factory that builds no module",
        lambda t: capture(t, file_with(t, "step5.pt", tiny_state), build=not_a_model),
        ValueError,
        r"model factory 'not_a_model' built a str, not a torch.nn.Module",
    ),
    Case(
        "a model factory path that does not import",
        lambda t: capture(t, file_with(t, "step5.pt", tiny_state), build="nowhere.models:net"),
        ValueError,
        r"model factory 'nowhere.models:net': cannot import nowhere.models",
    ),
    Case(
        "a text probe with a character its tokenizer does not know",
        lambda t: text_probe("abc!", CharTokenizer("abc"), seq_len=2),
        ValueError,
        r"the text has a character the tokenizer does not know: '!' \(first at offset 3\)",
    ),
    # configurations
    Case(
        "the callback's sae given as a dict with an unknown field",
        lambda t: tracker(sae={"k": 8, "latents": 64}),
        ValueError,
        r"sae: unknown SAEConfig field\(s\) \['latents'\]; known: ",
    ),
    Case(
        "the callback's match given as a string",
        lambda t: tracker(match="strict"),
        ValueError,
        r"match must be a MatchConfig or a dict of its fields, got str",
    ),
    Case(
        "SAEConfig with k >= d_sae",
        lambda t: SAEConfig(d_sae=8, k=8),
        ValueError,
        r"SAEConfig.k must be smaller than d_sae=8, got k=8",
    ),
    Case(
        "SAEConfig for a ReLU SAE with a TopK k",
        lambda t: SAEConfig(arch="relu", k=8),
        ValueError,
        r"SAEConfig.k is a field of arch='topk', not of arch='relu' \(its own: \['l1_coef'\]\)",
    ),
    Case(
        "SAEConfig with seeds 0",
        lambda t: SAEConfig(seeds=0),
        ValueError,
        r"SAEConfig.seeds must be positive, got 0",
    ),
    Case(
        "MatchConfig with tau_match 1.5",
        lambda t: MatchConfig(tau_match=1.5),
        ValueError,
        r"MatchConfig.tau_match must be in \[0, 1\], got 1.5",
    ),  # Ray
    Case(
        "Ray cluster address where no cluster answers",
        lambda t: analyze({0: X}, t / "x.duckdb", "r", executor="ray", address=closed_port()),
        ConnectionError,
        r"no Ray cluster answers at 127.0.0.1:\d+ \(Connection refused\): start one with `ray st",
    ),
    Case(
        "Ray cluster address that is not one",
        lambda t: analyze({0: X}, t / "x.duckdb", "r", executor="ray", address="head-node"),
        ValueError,
        r"Ray address 'head-node': expected host:port, ray://host:port or auto",
    ),
    Case(
        "`--threads` wider than any node of the Ray cluster",
        lambda t: analyze({0: X}, t / "x.duckdb", "r", executor="ray", threads=4096),
        ValueError,
        r"fits of 4096 threads fit no node of this Ray cluster \(the largest has \d+ CPUs\): "
        "ask for fewer threads",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.input for c in CASES])
def test_bad_input_gives_one_line_naming_the_problem(tmp_path, case):
    with pytest.raises(case.error) as info:
        case.act(tmp_path)
    message = str(info.value)
    assert re.search(case.message, message), message
    assert "\n" not in message, "one line"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "{t}"], "tracker fit: error: {t} is not a run directory (no run.json)"),
        (["app", "{t}/t.duckdb"], "tracker app: error: {t}/t.duckdb is not a DuckDB file, "),
        (["export", "{t}", "--parquet", "{t}/p"], "tracker export: error: {t} is a directory,"),
        (["analyze", "{t}/none", "--db", "{t}/x.duckdb"], "tracker analyze: error: activation "),
    ],
)
def test_the_cli_gives_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "t.duckdb").write_text("not a database")
    assert main([a.format(t=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(t=tmp_path)) and err.count("\n") == 1, err


def test_the_readme_table_lists_every_case():
    text = README.read_text()
    table = text[text.index("### Bad input") :].split("\n\n")[2]
    rows = [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()[2:]]
    assert rows == [c.input for c in CASES]
