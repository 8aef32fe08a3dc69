"""Decoding and encoding requests: V2 (JSON and binary tensors) and MLflow's formats."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from opsloop.errors import InvalidInput
from opsloop.registry.signature import Signature, infer_signature
from opsloop.serving import codec
from opsloop.serving.schema import InputSchema, output_columns

MIXED = Signature(
    inputs=[
        {"type": "double", "name": "x", "required": True},
        {"type": "long", "name": "n", "required": True},
        {"type": "string", "name": "city", "required": True},
        {"type": "double", "name": "maybe", "required": False},
    ]
)
DOUBLES = infer_signature(pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]}))
TENSOR = infer_signature(np.zeros((2, 3), dtype=np.float32))


def inv(doc: Any, sig: Signature, content_type: str = "application/json") -> codec.Rows:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return codec.decode_invocations(body, content_type, InputSchema.from_signature(sig))


def frame(rows: codec.Rows, sig: Signature) -> Any:
    return codec.model_input(rows, InputSchema.from_signature(sig))


def v2(inputs: list[dict[str, Any]], sig: Signature, **extra: Any) -> codec.V2Request:
    body = orjson.dumps({"inputs": inputs, **extra})
    return codec.decode_v2(body, InputSchema.from_signature(sig))


def test_schema_metadata_in_v2_types() -> None:
    schema = InputSchema.from_signature(MIXED)
    assert schema.layout == "columns"
    assert schema.metadata() == [
        {"name": "x", "datatype": "FP64", "shape": [-1]},
        {"name": "n", "datatype": "INT64", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
        {"name": "maybe", "datatype": "FP64", "shape": [-1]},
    ]
    tensor = InputSchema.from_signature(TENSOR)
    assert tensor.layout == "tensor"
    assert tensor.metadata() == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 3]}]
    assert InputSchema.from_signature(None).layout == "any"
    out = output_columns(Signature(inputs=[], outputs=[{"type": "long", "required": True}]))
    assert [c.metadata() for c in out] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]


def test_mlflow_formats_give_the_same_frame() -> None:
    df = pd.DataFrame({"x": [1.5, 2.0], "n": [1, 2], "city": ["a", "b"], "maybe": [None, 1.0]})
    docs = [
        {"dataframe_split": json.loads(df.to_json(orient="split", index=False))},
        {"dataframe_records": json.loads(df.to_json(orient="records"))},
        {"inputs": {c: json.loads(df[c].to_json(orient="values")) for c in df.columns}},
        {"instances": json.loads(df.to_json(orient="records"))},
        {"instances": [[1.5, 1, "a", None], [2.0, 2, "b", 1.0]]},
    ]
    for doc in docs:
        got = frame(inv(doc, MIXED), MIXED)
        assert list(got.columns) == ["x", "n", "city", "maybe"], doc
        assert got["x"].tolist() == [1.5, 2.0] and got["n"].dtype == np.int64, doc
        assert got["city"].tolist() == ["a", "b"], doc
        assert np.isnan(got["maybe"][0]) and got["maybe"][1] == 1.0, doc
    csv = inv(df.to_csv(index=False).encode(), MIXED, "text/csv; charset=utf-8")
    assert frame(csv, MIXED)["n"].tolist() == [1, 2]


def test_the_fast_path_keeps_one_block() -> None:
    rows = inv({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3.5]]}}, DOUBLES)
    assert rows.block is not None and rows.block.dtype == np.float64
    got = frame(rows, DOUBLES)
    assert list(got.columns) == ["a", "b", "c"] and got.iloc[0].tolist() == [1.0, 2.0, 3.5]
    # columns in another order take the column path, with the same result
    other = inv({"dataframe_split": {"columns": ["c", "b", "a"], "data": [[3.5, 2, 1]]}}, DOUBLES)
    assert other.block is None
    assert frame(other, DOUBLES).iloc[0].tolist() == [1.0, 2.0, 3.5]
    # extra columns are dropped in /invocations, as MLflow's server does
    extra = inv({"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0, "z": "x"}]}, DOUBLES)
    assert list(frame(extra, DOUBLES).columns) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("column", "values", "why"),
    [
        ("x", ["1.5", "2"], "string values"),
        ("x", [True, False], "boolean values"),
        ("n", [1.5, 2.0], "non-integral"),
        ("n", [None, 2], "missing values"),
        ("x", [None, 2.0], "missing values"),
        ("n", [2**63 + 5, 1], "out of range"),
        ("city", [1, 2], "city"),
    ],
)
def test_bad_values_name_the_column(column: str, values: list[Any], why: str) -> None:
    doc = {"x": [1.0, 2.0], "n": [1, 2], "city": ["a", "b"], column: values}
    with pytest.raises(InvalidInput, match=why) as info:
        inv({"inputs": doc}, MIXED)
    assert repr(column) in info.value.message


def test_casts_that_change_no_value_pass_and_others_fail() -> None:
    rows = inv({"inputs": {"x": [1, 2], "n": [3.0, 4.0], "city": ["a", "b"]}}, MIXED)
    got = frame(rows, MIXED)
    assert got["x"].dtype == np.float64 and got["n"].dtype == np.int64
    with pytest.raises(InvalidInput, match=r"'x'.*would change"):
        inv({"inputs": {"x": [2**60 + 1], "n": [1], "city": ["a"]}}, MIXED)
    floats = Signature(inputs=[{"type": "float", "name": "f", "required": True}])
    assert frame(inv({"inputs": {"f": [0.5]}}, floats), floats)["f"].dtype == np.float32
    with pytest.raises(InvalidInput, match="would change"):
        inv({"inputs": {"f": [0.1]}}, floats)


def test_missing_and_unknown_columns() -> None:
    with pytest.raises(InvalidInput, match=r"Missing required input column.*'city'"):
        inv({"dataframe_records": [{"x": 1.0, "n": 1}]}, MIXED)
    # the optional column may be absent
    assert "maybe" not in frame(
        inv({"inputs": {"x": [1.0], "n": [1], "city": ["a"]}}, MIXED), MIXED
    )
    base = [
        {"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["a"]},
    ]
    with pytest.raises(InvalidInput, match=r"Unknown input column.*'zzz'"):
        v2([*base, {"name": "zzz", "shape": [1], "datatype": "FP64", "data": [1.0]}], MIXED)
    with pytest.raises(InvalidInput, match="different numbers of rows"):
        v2(
            [*base[:2], {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}],
            MIXED,
        )


def test_v2_shapes_and_datatypes() -> None:
    ok = v2(
        [{"name": "t", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}], TENSOR
    )
    assert ok.rows.block is not None and ok.rows.block.shape == (2, 3)
    assert ok.rows.block.dtype == np.float32
    flat = v2(
        [{"name": "t", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}], TENSOR
    )
    assert flat.rows.block is not None and flat.rows.block.tolist() == ok.rows.block.tolist()
    with pytest.raises(InvalidInput, match=r"shape \[2, 2\].*\[-1, 3\]"):
        v2([{"name": "t", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}], TENSOR)
    with pytest.raises(InvalidInput, match="needs 6"):
        v2([{"name": "t", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3]}], TENSOR)
    with pytest.raises(InvalidInput, match="declared FP32 but holds strings"):
        v2([{"name": "t", "shape": [1, 3], "datatype": "FP32", "data": ["a", "b", "c"]}], TENSOR)
    with pytest.raises(InvalidInput, match='"shape"'):
        v2([{"name": "t", "shape": [-1, 3], "datatype": "FP32", "data": [1, 2, 3]}], TENSOR)
    with pytest.raises(InvalidInput, match='"inputs"'):
        codec.decode_v2(b'{"inputs": []}', InputSchema.from_signature(TENSOR))
    # a columns model also takes one [rows, columns] tensor, columns in order
    block = v2([{"name": "any", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], DOUBLES)
    assert frame(block.rows, DOUBLES).iloc[0].tolist() == [1.0, 2.0, 3.0]


def test_v2_binary_tensors_in_and_out() -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = orjson.dumps(
        {
            "id": "7",
            "inputs": [
                {
                    "name": "t",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": values.nbytes},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    )
    req = codec.decode_v2(
        header + values.tobytes(), InputSchema.from_signature(TENSOR), len(header)
    )
    assert req.id == "7" and req.rows.block is not None
    assert req.rows.block.tolist() == values.tolist()
    out = codec.outputs_of(np.array([1, 0]), 2, output_columns(None))
    body, json_length = codec.encode_v2("m", "1", req, out)
    assert json_length is not None
    doc = orjson.loads(body[:json_length])
    assert doc["id"] == "7"
    assert doc["outputs"] == [
        {
            "name": "predict",
            "datatype": "INT64",
            "shape": [2],
            "parameters": {"binary_data_size": 16},
        }
    ]
    assert np.frombuffer(body[json_length:], dtype=np.int64).tolist() == [1, 0]
    with pytest.raises(InvalidInput, match="beyond the body"):
        codec.decode_v2(
            header + values.tobytes()[:8], InputSchema.from_signature(TENSOR), len(header)
        )


def test_v2_bytes_binary_encoding() -> None:
    sig = Signature(inputs=[{"type": "string", "name": "s", "required": True}])
    raw = b"".join(len(s).to_bytes(4, "little") + s for s in (b"ab", b"", b"xyz"))
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "shape": [3],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    req = codec.decode_v2(header + raw, InputSchema.from_signature(sig), len(header))
    assert frame(req.rows, sig)["s"].tolist() == ["ab", "", "xyz"]


def test_outputs_split_and_encode() -> None:
    out = codec.outputs_of(pd.DataFrame({"p": [0.1, 0.9, 0.5], "label": ["a", "b", "c"]}), 3, ())
    assert out.frame
    part = out.slice(1, 3)
    assert orjson.loads(codec.encode_invocations(part)) == {
        "predictions": [{"p": 0.9, "label": "b"}, {"p": 0.5, "label": "c"}]
    }
    req = codec.V2Request(codec.Rows(2), outputs=["label"])
    body, _ = codec.encode_v2("m", "2", req, part)
    assert orjson.loads(body)["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["b", "c"]}
    ]
    with pytest.raises(InvalidInput, match="Unknown output"):
        codec.encode_v2("m", "2", codec.V2Request(codec.Rows(2), outputs=["nope"]), part)
    with pytest.raises(codec.PredictError, match="2 rows"):
        codec.outputs_of(np.array([1, 2]), 3, ())
    with pytest.raises(codec.PredictError, match="one prediction per row"):
        codec.outputs_of(3.0, 3, ())


def test_malformed_bodies() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        inv(b"{nope", DOUBLES)
    with pytest.raises(InvalidInput, match="exactly one of"):
        inv({"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, DOUBLES)
    with pytest.raises(InvalidInput, match="different lengths"):
        inv({"instances": [[1, 2, 3], [1, 2]]}, DOUBLES)
    with pytest.raises(InvalidInput, match="no rows"):
        inv({"dataframe_split": {"columns": ["a", "b", "c"], "data": []}}, DOUBLES)
    with pytest.raises(InvalidInput, match="not valid CSV"):
        inv(b'a,b\n"1,2\n', DOUBLES, "text/csv")
    # Python's json writes NaN bare; it is read, and then refused in a required column
    with pytest.raises(InvalidInput, match="'b' has missing values"):
        inv(b'{"instances": [[1.0, NaN, 3.0]]}', DOUBLES)


def test_no_signature_passes_columns_through() -> None:
    sig = Signature(inputs=[])
    rows = inv({"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}, sig)
    got = frame(rows, sig)
    assert got.to_dict(orient="list") == {"a": [1, 2], "b": ["x", "y"]}
