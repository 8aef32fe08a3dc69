"""The search language (opsloop.tracking.search): parsing, errors, and the SQL it compiles
to, run on SQLite and PostgreSQL against a handful of runs, experiments and models."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from opsloop.errors import InvalidInput
from opsloop.store.tables import (
    experiment_tags,
    experiments,
    latest_metrics,
    metadata,
    model_version_tags,
    model_versions,
    params,
    registered_model_tags,
    registered_models,
    runs,
    tags,
)
from opsloop.tracking.search import (
    Comparison,
    OrderKey,
    experiment_filter,
    experiment_order,
    model_version_filter,
    model_version_order,
    parse_experiment_filter,
    parse_filter,
    parse_model_version_filter,
    parse_registered_model_filter,
    parse_run_order,
    registered_model_filter,
    registered_model_order,
    run_filter,
    run_order,
)
from tests.conftest import PG_BASE, missing_service, pg_schema_url


def C(entity: str, key: str, comparator: str, value: Any) -> Comparison:
    return Comparison(entity, key, comparator, value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   ", []),
        ("metrics.acc > 0.5", [C("metric", "acc", ">", 0.5)]),
        ("metric.acc >= 1", [C("metric", "acc", ">=", 1.0)]),
        ("metrics.acc < -2", [C("metric", "acc", "<", -2.0)]),
        ("metrics.acc <= 1e-3", [C("metric", "acc", "<=", 0.001)]),
        ("metrics.acc = 1.5E+2", [C("metric", "acc", "=", 150.0)]),
        ("metrics.acc != .5", [C("metric", "acc", "!=", 0.5)]),
        ("metrics.acc>0.5", [C("metric", "acc", ">", 0.5)]),
        ("metrics.acc < 1e999", [C("metric", "acc", "<", math.inf)]),
        ("params.lr = '0.1'", [C("param", "lr", "=", "0.1")]),
        ('param.lr != "0.1"', [C("param", "lr", "!=", "0.1")]),
        ("parameters.m LIKE 'res%'", [C("param", "m", "LIKE", "res%")]),
        ("params.m ilike 'RES%'", [C("param", "m", "ILIKE", "RES%")]),
        ("params.m IS NULL", [C("param", "m", "IS NULL", None)]),
        ("tags.t is not null", [C("tag", "t", "IS NOT NULL", None)]),
        ("tags.team = 'vision'", [C("tag", "team", "=", "vision")]),
        ("tag.team = 'vision'", [C("tag", "team", "=", "vision")]),
        # Keys: dotted, backticked, double-quoted; values with quotes inside.
        ("tags.mlflow.runName = 'x'", [C("tag", "mlflow.runName", "=", "x")]),
        ("tags.\"mlflow.runName\" = 'x'", [C("tag", "mlflow.runName", "=", "x")]),
        ("metrics.`my metric` > 1", [C("metric", "my metric", ">", 1.0)]),
        ("params.`a``b` = 'x'", [C("param", "a`b", "=", "x")]),
        ("params.val-loss/x = 'x'", [C("param", "val-loss/x", "=", "x")]),
        ("`metrics`.acc > 1", [C("metric", "acc", ">", 1.0)]),
        ("Metrics.acc > 1", [C("metric", "acc", ">", 1.0)]),
        ("params.q = 'it''s'", [C("param", "q", "=", "it's")]),
        ('params.q = "say ""hi"""', [C("param", "q", "=", 'say "hi"')]),
        ("params.q = 'a \"b\"'", [C("param", "q", "=", 'a "b"')]),
        ("params.q = ''", [C("param", "q", "=", "")]),
        ("params.q = 'and or ( )'", [C("param", "q", "=", "and or ( )")]),
        # Attributes and their aliases.
        ("attributes.status = 'FINISHED'", [C("attribute", "status", "=", "FINISHED")]),
        ("attribute.user_id != 'x'", [C("attribute", "user_id", "!=", "x")]),
        ("attr.artifact_uri LIKE 's3://%'", [C("attribute", "artifact_uri", "LIKE", "s3://%")]),
        ("run.run_name ILIKE 'a%'", [C("attribute", "run_name", "ILIKE", "a%")]),
        ("attributes.`Run Name` = 'a'", [C("attribute", "run_name", "=", "a")]),
        ("status = 'RUNNING'", [C("attribute", "status", "=", "RUNNING")]),
        ("lifecycle_stage = 'active'", [C("attribute", "lifecycle_stage", "=", "active")]),
        ("attributes.start_time >= 5", [C("attribute", "start_time", ">=", 5)]),
        ("attributes.created < 5", [C("attribute", "start_time", "<", 5)]),
        ("end_time > 1.5", [C("attribute", "end_time", ">", 1.5)]),
        ("run_id IN ('a', \"b\")", [C("attribute", "run_id", "IN", ("a", "b"))]),
        ("attributes.run_id in ('a')", [C("attribute", "run_id", "IN", ("a",))]),
        ("attributes.status NOT IN ('A','B')", [C("attribute", "status", "NOT IN", ("A", "B"))]),
        (
            "attributes.status not  in ( 'A' , 'B' )",
            [C("attribute", "status", "NOT IN", ("A", "B"))],
        ),
        # And.
        (
            "metrics.acc > 0.5 and params.lr = '0.1' AND tags.t LIKE '%x'",
            [
                C("metric", "acc", ">", 0.5),
                C("param", "lr", "=", "0.1"),
                C("tag", "t", "LIKE", "%x"),
            ],
        ),
        (
            "  metrics.a = 1   And   metrics.b = 2  ",
            [C("metric", "a", "=", 1.0), C("metric", "b", "=", 2.0)],
        ),
        ("params.and = 'x'", [C("param", "and", "=", "x")]),
    ],
)
def test_parse_runs(text: str, expected: list[Comparison]) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # Structure
        ("metrics.a > 1 or params.b = 'x'", "'or' is not supported"),
        ("metrics.a > 1 OR metrics.b > 1", "'or' is not supported"),
        ("metrics.a > 1 and", "expected a comparison after 'and'"),
        ("and metrics.a > 1", "empty clause before 'and'"),
        ("metrics.a > 1 and and metrics.b > 1", "empty clause before 'and'"),
        ("metrics.a > 1 params.b = 'x'", "unexpected \"params.b = 'x'\""),
        ("metrics.a > 1 )", "unexpected ')'"),
        ("params.a = 'x' 'y'", "expected 'and' or the end"),
        ("(metrics.a > 1)", "expected an identifier"),
        ("metrics.a", "expected a comparator after 'metrics.a'"),
        ("metrics.a 1", "expected a comparator after 'metrics.a'"),
        ("metrics.a == 1", "'==' is not a comparator"),
        ("metrics.a <> 1", "'<>' is not a comparator"),
        ("params.a NOT LIKE 'x'", "expected a comparator"),
        ("params.a IS 'x'", "expected a comparator"),
        ("params.a RLIKE 'x'", "expected a comparator"),
        ("metrics.a >", "expected a value, found the end"),
        ("= 1", "expected an identifier"),
        ("'x' = 1", "expected an identifier"),
        # Identifiers
        ("foo.a = 1", "unknown entity type 'foo'"),
        ("datasets.name = 'x'", "dataset filters are not supported"),
        ("attributes.nope = 'x'", "unknown run attribute 'nope'"),
        ("nope = 'x'", "unknown run attribute 'nope'"),
        ("attributes.Status = 'x'", "unknown run attribute 'Status'"),
        ("metrics. > 1", "expected a key after 'metrics.'"),
        ("metrics.`` > 1", "empty key"),
        ("metrics.`abc > 1", "unterminated string"),
        # Comparators per type
        ("params.a > '1'", "comparator '>' is not valid for 'params.a'"),
        ("tags.a <= '1'", "comparator '<=' is not valid for 'tags.a'"),
        ("metrics.a LIKE '1'", "comparator 'LIKE' is not valid for 'metrics.a'"),
        ("metrics.a IS NULL", "comparator 'IS NULL' is not valid for 'metrics.a'"),
        ("tags.a IN ('x')", "comparator 'IN' is not valid for 'tags.a'"),
        ("attributes.start_time LIKE '1'", "comparator 'LIKE' is not valid"),
        ("attributes.status > 'x'", "comparator '>' is not valid"),
        ("attributes.status IS NULL", "comparator 'IS NULL' is not valid"),
        ("attributes.end_time IN (1)", "comparator 'IN' is not valid"),
        # Values
        ("metrics.a > 'x'", "expected a number after 'metrics.a >', found \"'x'\""),
        ("metrics.a > '0.5'", "expected a number"),
        ("metrics.a > abc", "expected a number after 'metrics.a >', found bare word 'abc'"),
        ("metrics.a > nan", "found bare word 'nan'"),
        ("metrics.a > 1x", "malformed number '1x'"),
        ("metrics.a > 1.2.3", "malformed number"),
        ("attributes.start_time > 'x'", "expected a number"),
        ("params.a = 1", "expected a quoted string after 'params.a ='"),
        ("params.a = abc", "found bare word 'abc'"),
        ("attributes.status = RUNNING", "found bare word 'RUNNING'"),
        ("params.a = 'abc", 'unterminated string "\'abc"'),
        ('params.a = "abc', "unterminated string"),
        ("params.a = 'x\x00y'", "NUL"),
        ("params.a LIKE 'ab\\'", "ends with a lone '\\'"),
        ("params.a = ('x')", "a list is only valid after IN or NOT IN"),
        ("attributes.run_id IN 'a'", "expected a parenthesized list"),
        ("attributes.run_id IN ()", "empty list"),
        ("attributes.run_id IN ('a',)", "expected a value"),
        ("attributes.run_id IN ('a' 'b')", "expected ',' or ')'"),
        ("attributes.run_id IN ('a'", "expected ',' or ')' in the list, found the end"),
        ("attributes.run_id IN (a)", "expected a quoted value in the list"),
        ("attributes.run_id IN (1)", "expected a quoted string"),
    ],
)
def test_parse_runs_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter(text)
    assert fragment in info.value.message
    assert info.value.message.startswith("Invalid filter ")
    assert info.value.http_status == 400
    # Every entry point raises the same.
    with pytest.raises(InvalidInput):
        run_filter(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidInput):
        parse_filter(42)  # type: ignore[arg-type]
    assert run_filter(None) is None
    assert run_filter("") is None


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["metrics.acc DESC"], [OrderKey("metric", "acc", False)]),
        (["metrics.acc"], [OrderKey("metric", "acc", True)]),
        (["params.lr asc"], [OrderKey("param", "lr", True)]),
        (["tags.`a b` desc"], [OrderKey("tag", "a b", False)]),
        (['tags."mlflow.runName"'], [OrderKey("tag", "mlflow.runName", True)]),
        (["attributes.start_time ASC"], [OrderKey("attribute", "start_time", True)]),
        (["start_time"], [OrderKey("attribute", "start_time", True)]),
        (["created DESC"], [OrderKey("attribute", "start_time", False)]),
        (
            ["run_name", "  end_time   Desc  "],
            [
                OrderKey("attribute", "run_name", True),
                OrderKey("attribute", "end_time", False),
            ],
        ),
    ],
)
def test_parse_order(items: list[str], expected: list[OrderKey]) -> None:
    assert parse_run_order(items) == expected


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        (["metrics.acc DOWN"], "expected ASC, DESC or the end"),
        (["metrics.acc DESC x"], "unexpected 'x'"),
        (["foo.acc"], "unknown entity type 'foo'"),
        (["attributes.nope"], "unknown run attribute 'nope'"),
        ([""], "expected an identifier"),
        (["metrics.acc", "metrics.acc DESC"], "already ordered by"),
        (["start_time", "created"], "already ordered by"),
        (["metrics.`acc"], "unterminated string"),
        (["datasets.name"], "dataset filters are not supported"),
    ],
)
def test_parse_order_errors(items: list[str], fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        run_order(items)
    assert fragment in info.value.message


def test_order_rejects_a_bare_string() -> None:
    with pytest.raises(InvalidInput, match="list of strings"):
        run_order("metrics.acc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'm'", [C("attribute", "name", "=", "m")]),
        ("name LIKE '%m%'", [C("attribute", "name", "LIKE", "%m%")]),
        ("attributes.name ILIKE 'M%'", [C("attribute", "name", "ILIKE", "M%")]),
        ("name IN ('a', 'b')", [C("attribute", "name", "IN", ("a", "b"))]),
        (
            "tags.k = 'v' and tags.`a b` != 'w'",
            [C("tag", "k", "=", "v"), C("tag", "a b", "!=", "w")],
        ),
    ],
)
def test_parse_registered_models(text: str, expected: list[Comparison]) -> None:
    assert parse_registered_model_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("run_id = 'x'", "unknown registered model attribute 'run_id'"),
        ("metrics.a > 1", "unknown entity type 'metrics'"),
        ("params.a = 'x'", "unknown entity type 'params'"),
        ("tags.k IS NULL", "comparator 'IS NULL' is not valid"),
        ("name > 'a'", "comparator '>' is not valid"),
    ],
)
def test_parse_registered_models_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        registered_model_filter(text)
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name = 'm' and version_number = 3",
            [
                C("attribute", "name", "=", "m"),
                C("attribute", "version_number", "=", 3),
            ],
        ),
        ("version_number >= 2", [C("attribute", "version_number", ">=", 2)]),
        ("run_id = 'r'", [C("attribute", "run_id", "=", "r")]),
        ("run_id IN ('r1', 'r2')", [C("attribute", "run_id", "IN", ("r1", "r2"))]),
        ("source_path = 's3://x'", [C("attribute", "source_path", "=", "s3://x")]),
        ("source LIKE 's3://%'", [C("attribute", "source_path", "LIKE", "s3://%")]),
        ("tags.k = 'v'", [C("tag", "k", "=", "v")]),
    ],
)
def test_parse_model_versions(text: str, expected: list[Comparison]) -> None:
    assert parse_model_version_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version_number = '3'", "expected an integer"),
        ("version_number = 3.5", "expected an integer"),
        ("version_number = 99999999999", "out of range"),
        ("version_number LIKE '3'", "comparator 'LIKE' is not valid"),
        ("source_path IN ('x')", "comparator 'IN' is not valid"),
        ("stage = 'x'", "unknown model version attribute 'stage'"),
    ],
)
def test_parse_model_versions_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        model_version_filter(text)
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'e'", [C("attribute", "name", "=", "e")]),
        ("experiment_id = '3'", [C("attribute", "experiment_id", "=", 3)]),
        ("experiment_id = 3", [C("attribute", "experiment_id", "=", 3)]),
        ("experiment_id IN ('1', '2')", [C("attribute", "experiment_id", "IN", (1, 2))]),
        ("creation_time > 10", [C("attribute", "creation_time", ">", 10)]),
        ("attribute.last_update_time <= 10", [C("attribute", "last_update_time", "<=", 10)]),
        ("tags.k IS NULL", [C("tag", "k", "IS NULL", None)]),
    ],
)
def test_parse_experiments(text: str, expected: list[Comparison]) -> None:
    assert parse_experiment_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("experiment_id = 'abc'", "expected an integer"),
        ("experiment_id IN ('1', 'x')", "expected an integer"),
        ("experiment_id = '99999999999'", "out of range"),
        ("experiment_id > '1'", "comparator '>' is not valid"),
        ("name IN ('a')", "comparator 'IN' is not valid"),
        ("creation_time > 1.5", "expected an integer"),
        ("lifecycle_stage = 'active'", "unknown experiment attribute"),
        ("metrics.a > 1", "unknown entity type 'metrics'"),
    ],
)
def test_parse_experiments_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        experiment_filter(text)
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("call", "items", "fragment"),
    [
        (experiment_order, ["tags.k"], "cannot order experiments by 'tags.k'"),
        (experiment_order, ["nope"], "unknown experiment attribute"),
        (registered_model_order, ["version_number"], "unknown registered model attribute"),
        (model_version_order, ["run_id"], "unknown model version attribute"),
        (model_version_order, ["name", "name DESC"], "already ordered by"),
    ],
)
def test_order_errors_registry_and_experiments(call: Any, items: list[str], fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        call(items)
    assert fragment in info.value.message


# ---------------------------------------------------------------------------------------
# Execution on SQLite and PostgreSQL


INF = float("inf")

# run id: (start_time, end_time, status, name, user, params, tags, metrics)
# A metric value None is NaN (stored as 0 with is_nan set).
RUNS: dict[str, tuple[Any, ...]] = {
    "r1": (100, 200, "FINISHED", "alpha", "ann",
           {"lr": "0.1", "model": "ResNet"},
           {"team": "vision", "mlflow.runName": "alpha"},
           {"acc": 0.9, "loss": 0.5}),
    "r2": (200, None, "RUNNING", "beta", "bob",
           {"lr": "0.01", "model": "resnet50", "pat": "x*[y]?"},
           {"team": "nlp"},
           {"acc": 0.7, "loss": None}),
    "r3": (300, 400, "FAILED", "gamma", "ann",
           {"lr": "0.1"},
           {},
           {"loss": 0.0}),
    "r4": (300, None, "FINISHED", "delta_%", "cat",
           {"model": "a_b%c"},
           {"team": "Vision"},
           {"acc": 0.9, "loss": -5.0, "big": INF}),
}  # fmt: skip


def _load(engine: Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(
            experiments.insert(),
            [
                dict(experiment_id=1, name="exp-a", artifact_location="x", creation_time=100,
                     last_update_time=150),
                dict(experiment_id=2, name="exp-b", artifact_location="x", creation_time=200,
                     last_update_time=200),
                dict(experiment_id=3, name="other", artifact_location="x", creation_time=200,
                     last_update_time=300),
            ],
        )  # fmt: skip
        c.execute(experiment_tags.insert(), [dict(experiment_id=1, key="owner", value="ann")])
        for rid, (start, end, status, name, user, ps, ts, ms) in RUNS.items():
            c.execute(
                runs.insert(),
                dict(run_uuid=rid, experiment_id=1, name=name, status=status, start_time=start,
                     end_time=end, user_id=user, artifact_uri=f"s3://bucket/{rid}"),
            )  # fmt: skip
            if ps:
                c.execute(
                    params.insert(), [dict(run_uuid=rid, key=k, value=v) for k, v in ps.items()]
                )
            if ts:
                c.execute(
                    tags.insert(), [dict(run_uuid=rid, key=k, value=v) for k, v in ts.items()]
                )
            c.execute(
                latest_metrics.insert(),
                [
                    dict(run_uuid=rid, key=k, step=0, timestamp=0,
                         value=0.0 if v is None else v, is_nan=v is None)
                    for k, v in ms.items()
                ],
            )  # fmt: skip
        c.execute(
            registered_models.insert(),
            [
                dict(name="alpha", creation_time=1, last_updated_time=5),
                dict(name="alpha2", creation_time=3, last_updated_time=4),
                dict(name="beta", creation_time=2, last_updated_time=3),
                dict(name="Gamma", creation_time=4, last_updated_time=1),
            ],
        )
        c.execute(
            registered_model_tags.insert(),
            [
                dict(name="alpha", key="stage", value="prod"),
                dict(name="beta", key="stage", value="dev"),
            ],
        )
        c.execute(
            model_versions.insert(),
            [
                dict(name="alpha", version=1, creation_time=10, last_updated_time=20,
                     source="s3://a/1", run_id="r1"),
                dict(name="alpha", version=2, creation_time=11, last_updated_time=30,
                     source="s3://a/2", run_id="r2"),
                dict(name="beta", version=1, creation_time=12, last_updated_time=25,
                     source="s3://b/1", run_id="r1"),
            ],
        )  # fmt: skip
        c.execute(
            model_version_tags.insert(), [dict(name="alpha", version=2, key="env", value="prod")]
        )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("search") / "search.db"
        eng = sa.create_engine(f"sqlite:///{path}")
        _load(eng)
        yield eng
        eng.dispose()
    else:
        if not request.getfixturevalue("pg_available"):
            missing_service(f"PostgreSQL at {PG_BASE}")
        with pg_schema_url() as url:
            eng = sa.create_engine(url)
            _load(eng)
            yield eng
            eng.dispose()


def _run_ids(
    engine: Engine, filter_string: str | None, order_by: list[str] | None = None
) -> list[str]:
    q = sa.select(runs.c.run_uuid).where(runs.c.experiment_id == 1)
    clause = run_filter(filter_string)
    if clause is not None:
        q = q.where(clause)
    q = q.order_by(*run_order(order_by))
    with engine.connect() as c:
        return [r[0] for r in c.execute(q)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {"r1", "r2", "r3", "r4"}),
        # metrics: latest value; NaN and missing never match, "!=" included.
        ("metrics.acc > 0.8", {"r1", "r4"}),
        ("metrics.acc >= 0.9", {"r1", "r4"}),
        ("metrics.acc < 0.8", {"r2"}),
        ("metrics.acc <= 0.7", {"r2"}),
        ("metrics.acc = 0.9", {"r1", "r4"}),
        ("metrics.acc != 0.9", {"r2"}),
        ("metrics.loss = 0", {"r3"}),
        ("metrics.loss != 1", {"r1", "r3", "r4"}),
        ("metrics.loss < 1e999", {"r1", "r3", "r4"}),
        ("metrics.loss > -1e999", {"r1", "r3", "r4"}),
        ("metrics.big > 1e308", {"r4"}),
        ("metrics.big = 1e999", {"r4"}),
        ("metrics.nope > 0", set()),
        # params
        ("params.lr = '0.1'", {"r1", "r3"}),
        ('params.lr = "0.01"', {"r2"}),
        ("params.model != 'ResNet'", {"r2", "r4"}),
        ("params.model LIKE 'res%'", {"r2"}),
        ("params.model LIKE 'Res%'", {"r1"}),
        ("params.model ILIKE 'res%'", {"r1", "r2"}),
        ("params.model LIKE '%Net'", {"r1"}),
        ("params.model LIKE 'resnet__'", {"r2"}),
        ("params.model LIKE 'a_b%'", {"r4"}),
        ("params.model LIKE 'a\\_b\\%c'", {"r4"}),
        ("params.model LIKE 'a\\%%'", set()),
        ("params.model ILIKE 'A\\_B%'", {"r4"}),
        ("params.pat LIKE 'x*[y]?'", {"r2"}),
        ("params.pat LIKE 'x_[y]_'", {"r2"}),
        ("params.pat LIKE 'xx[y]?'", set()),
        ("params.model IS NULL", {"r3"}),
        ("params.model IS NOT NULL", {"r1", "r2", "r4"}),
        # tags
        ("tags.team = 'vision'", {"r1"}),
        ("tags.team ILIKE 'VISION'", {"r1", "r4"}),
        ("tags.team != 'nlp'", {"r1", "r4"}),
        ("tags.\"mlflow.runName\" = 'alpha'", {"r1"}),
        ("tags.mlflow.runName LIKE 'al%'", {"r1"}),
        ("tags.team IS NULL", {"r3"}),
        # attributes
        ("attributes.run_id = 'r2'", {"r2"}),
        ("run_id IN ('r2', 'r3', 'zz')", {"r2", "r3"}),
        ("attributes.run_id NOT IN ('r2', 'r3')", {"r1", "r4"}),
        ("attributes.status IN ('FINISHED', 'FAILED')", {"r1", "r3", "r4"}),
        ("attributes.status != 'RUNNING'", {"r1", "r3", "r4"}),
        ("attributes.run_name = 'gamma'", {"r3"}),
        ("attributes.run_name LIKE 'delta\\_\\%'", {"r4"}),
        ("attributes.run_name LIKE 'delta_\\%'", {"r4"}),
        ("attributes.run_name LIKE 'delt\\_%'", set()),
        ("attributes.user_id = 'ann'", {"r1", "r3"}),
        ("attributes.artifact_uri LIKE 's3://bucket/r_'", {"r1", "r2", "r3", "r4"}),
        ("attributes.lifecycle_stage = 'active'", {"r1", "r2", "r3", "r4"}),
        ("attributes.start_time >= 300", {"r3", "r4"}),
        ("attributes.created < 200", {"r1"}),
        ("attributes.start_time > 150.5", {"r2", "r3", "r4"}),
        ("attributes.start_time < 200.5", {"r1", "r2"}),
        ("attributes.start_time < 1e30", {"r1", "r2", "r3", "r4"}),
        ("attributes.start_time > 99999999999999999999999", set()),
        ("attributes.end_time > 0", {"r1", "r3"}),
        ("attributes.end_time != 200", {"r3"}),
        # and
        ("attributes.user_id = 'ann' and metrics.acc > 0", {"r1"}),
        ("params.lr = '0.1' and metrics.loss = 0", {"r3"}),
        ("metrics.acc > 0.5 and params.lr = '0.1' and tags.team = 'vision'", {"r1"}),
        ("metrics.acc > 0.5 and metrics.acc < 0.95 and params.model ILIKE '%b%'", {"r4"}),
        # Odd but valid values never reach the database as errors.
        ("params.lr = 'é ü 中文 \U0001f600'", set()),
        ("params.lr = '" + "x" * 10_000 + "'", set()),
        ("tags.`" + "k" * 400 + "` = 'x'", set()),
        ("attributes.run_id = 'r1" + "x" * 40 + "'", set()),
        ("attributes.run_id IN ('r2" + "x" * 40 + "')", set()),
        ("params.lr LIKE '%''%'", set()),
    ],
)
def test_filter_matches(engine: Engine, text: str | None, expected: set[str]) -> None:
    assert set(_run_ids(engine, text)) == expected


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (None, ["r3", "r4", "r2", "r1"]),
        ([], ["r3", "r4", "r2", "r1"]),
        # Ties (r1, r4 at 0.9) go by start_time DESC; a run lacking the metric is last.
        (["metrics.acc DESC"], ["r4", "r1", "r2", "r3"]),
        (["metrics.acc ASC"], ["r2", "r4", "r1", "r3"]),
        (["metrics.acc"], ["r2", "r4", "r1", "r3"]),
        # NaN (r2) after every number, in both directions.
        (["metrics.loss ASC"], ["r4", "r3", "r1", "r2"]),
        (["metrics.loss DESC"], ["r1", "r3", "r4", "r2"]),
        (["metrics.big DESC"], ["r4", "r3", "r2", "r1"]),
        (["metrics.nope DESC"], ["r3", "r4", "r2", "r1"]),
        (["params.lr ASC"], ["r2", "r3", "r1", "r4"]),
        (["params.lr DESC"], ["r3", "r1", "r2", "r4"]),
        (["params.lr DESC", "metrics.acc ASC"], ["r1", "r3", "r2", "r4"]),
        (["attributes.user_id DESC"], ["r4", "r2", "r3", "r1"]),
        (["attributes.end_time ASC"], ["r1", "r3", "r4", "r2"]),
        (["attributes.end_time DESC"], ["r3", "r1", "r4", "r2"]),
        (["start_time ASC"], ["r1", "r2", "r3", "r4"]),
        (["attributes.created DESC"], ["r3", "r4", "r2", "r1"]),
        (["run_id DESC"], ["r4", "r3", "r2", "r1"]),
        (["attributes.run_name ASC"], ["r1", "r2", "r4", "r3"]),
        (["attributes.status ASC", "metrics.acc DESC"], ["r3", "r4", "r1", "r2"]),
    ],
)
def test_order(engine: Engine, order_by: list[str] | None, expected: list[str]) -> None:
    assert _run_ids(engine, None, order_by) == expected


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_order_by_tag_missing_last(engine: Engine, direction: str) -> None:
    got = _run_ids(engine, None, [f"tags.team {direction}"])
    # The others' order depends on the collation (nlp, vision, Vision).
    assert got[-1] == "r3"
    assert sorted(got[:3]) == ["r1", "r2", "r4"]


def test_filter_and_order_together(engine: Engine) -> None:
    got = _run_ids(engine, "metrics.acc > 0 and params.model IS NOT NULL", ["metrics.acc DESC"])
    assert got == ["r4", "r1", "r2"]


def _clause(text: str) -> sa.ColumnElement[bool]:
    clause = run_filter(text)
    assert clause is not None
    return clause


def test_literal_binds_compile(engine: Engine) -> None:
    """A statement compiled with its values inline (logging, EXPLAIN) is still valid."""
    q = (
        sa.select(runs.c.run_uuid)
        .where(_clause("metrics.acc > 0.5 and params.lr = '0.1'"))
        .order_by(*run_order(["metrics.loss DESC", "metrics.acc ASC"]))
    )
    sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as c:
        assert [r[0] for r in c.exec_driver_sql(sql)] == ["r1"]


def _names(
    engine: Engine, table: sa.Table, clause: Any, order: list[Any], cols: list[str]
) -> list[Any]:
    q = sa.select(*(table.c[c] for c in cols))
    if clause is not None:
        q = q.where(clause)
    with engine.connect() as c:
        rows = c.execute(q.order_by(*order)).all()
    return [r[0] if len(cols) == 1 else tuple(r) for r in rows]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'beta'", ["beta"]),
        ("name LIKE 'alpha%'", ["alpha", "alpha2"]),
        ("name LIKE 'gamma'", []),
        ("name ILIKE 'gamma'", ["Gamma"]),
        ("name IN ('beta', 'x')", ["beta"]),
        ("name NOT IN ('beta', 'Gamma')", ["alpha", "alpha2"]),
        ("tags.stage = 'prod'", ["alpha"]),
        # In the registry a model without the tag is "not equal" too (MLflow's rule).
        ("tags.stage != 'prod'", ["Gamma", "alpha2", "beta"]),
        ("tags.stage LIKE '%e%' and name != 'alpha'", ["beta"]),
    ],
)
def test_registered_model_filter(engine: Engine, text: str, expected: list[str]) -> None:
    got = _names(
        engine,
        registered_models,
        registered_model_filter(text),
        registered_model_order(None),
        ["name"],
    )
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (None, ["alpha", "alpha2", "beta"]),
        (["name DESC"], ["beta", "alpha2", "alpha"]),
        (["creation_timestamp DESC"], ["alpha2", "beta", "alpha"]),
        (["last_updated_timestamp ASC"], ["beta", "alpha2", "alpha"]),
        (["timestamp DESC"], ["alpha", "alpha2", "beta"]),
    ],
)
def test_registered_model_order(
    engine: Engine, order_by: list[str] | None, expected: list[str]
) -> None:
    clause = registered_model_filter("name != 'Gamma'")
    assert (
        _names(engine, registered_models, clause, registered_model_order(order_by), ["name"])
        == expected
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'alpha' and version_number >= 2", [("alpha", 2)]),
        ("version_number = 1", [("alpha", 1), ("beta", 1)]),
        ("version_number != 1", [("alpha", 2)]),
        ("run_id = 'r2'", [("alpha", 2)]),
        ("run_id IN ('r1', 'zz')", [("alpha", 1), ("beta", 1)]),
        ("run_id NOT IN ('r1')", [("alpha", 2)]),
        ("source_path = 's3://b/1'", [("beta", 1)]),
        ("source LIKE 's3://a/%'", [("alpha", 1), ("alpha", 2)]),
        ("tags.env = 'prod'", [("alpha", 2)]),
        # Versions without the tag are "not equal" too (MLflow's registry rule).
        ("tags.env != 'prod'", [("alpha", 1), ("beta", 1)]),
        ("name IN ('beta')", [("beta", 1)]),
    ],
)
def test_model_version_filter(engine: Engine, text: str, expected: list[tuple[str, int]]) -> None:
    got = _names(
        engine,
        model_versions,
        model_version_filter(text),
        model_version_order(None),
        ["name", "version"],
    )
    assert sorted(got) == expected


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (None, [("alpha", 2), ("beta", 1), ("alpha", 1)]),
        (["name ASC"], [("alpha", 2), ("alpha", 1), ("beta", 1)]),
        (["version_number ASC"], [("alpha", 1), ("beta", 1), ("alpha", 2)]),
        (["creation_timestamp DESC"], [("beta", 1), ("alpha", 2), ("alpha", 1)]),
    ],
)
def test_model_version_order(
    engine: Engine, order_by: list[str] | None, expected: list[tuple[str, int]]
) -> None:
    got = _names(engine, model_versions, None, model_version_order(order_by), ["name", "version"])
    assert got == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name LIKE 'exp-%'", [1, 2]),
        ("name = 'other'", [3]),
        ("creation_time > 150", [2, 3]),
        ("last_update_time <= 200", [1, 2]),
        ("experiment_id = '2'", [2]),
        ("experiment_id != 2", [1, 3]),
        ("experiment_id IN ('1', '3')", [1, 3]),
        ("experiment_id NOT IN ('1')", [2, 3]),
        ("tags.owner = 'ann'", [1]),
        ("tags.owner IS NULL", [2, 3]),
        ("tags.owner IS NOT NULL and name ILIKE 'EXP%'", [1]),
    ],
)
def test_experiment_filter(engine: Engine, text: str, expected: list[int]) -> None:
    got = _names(
        engine, experiments, experiment_filter(text), experiment_order(None), ["experiment_id"]
    )
    assert sorted(got) == expected


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (None, [2, 3, 1]),  # creation_time DESC, experiment_id ASC
        (["creation_time DESC"], [3, 2, 1]),  # explicit: experiment_id DESC breaks ties
        (["name ASC"], [1, 2, 3]),
        (["last_update_time DESC"], [3, 2, 1]),
        (["experiment_id ASC"], [1, 2, 3]),
    ],
)
def test_experiment_order(engine: Engine, order_by: list[str] | None, expected: list[int]) -> None:
    assert (
        _names(engine, experiments, None, experiment_order(order_by), ["experiment_id"]) == expected
    )


def test_sqlite_plan_uses_indexes(tmp_path: Path) -> None:
    """The benchmark's query shape: equality through the (key, value) index, everything
    else one primary-key probe per run."""
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    metadata.create_all(eng)
    q = (
        sa.select(runs)
        .where(runs.c.experiment_id == 1)
        .where(_clause("metrics.acc > 0.5 and params.lr = '0.1' and tags.t != 'x'"))
        .order_by(*run_order(["metrics.loss DESC"]))
        .limit(100)
    )
    sql = str(q.compile(eng, compile_kwargs={"literal_binds": True}))
    with eng.connect() as c:
        plan = " | ".join(str(r[-1]) for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    eng.dispose()
    assert "ix_params_key_value (key=? AND value=?)" in plan
    # latest_metrics, params and tags are WITHOUT ROWID tables: a probe is one B-tree search.
    assert "latest_metrics USING PRIMARY KEY (run_uuid=? AND key=?)" in plan
    assert "tags USING PRIMARY KEY (run_uuid=? AND key=?)" in plan
    assert (
        "SCAN latest_metrics" not in plan and "SCAN params" not in plan and "SCAN tags" not in plan
    )
