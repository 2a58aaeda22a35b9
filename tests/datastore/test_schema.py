import pyarrow as pa
import pytest

from datastore import schema
from datastore.records import Reason, Reject


def test_partition_path_and_shard_names():
    values = {"corpus": "fleurs", "split": "test", "lang": "fr"}
    assert (
        schema.partition_path(values, schema.TOKEN_PARTITIONS) == "corpus=fleurs/split=test/lang=fr"
    )
    assert schema.shard_name(3) == "part-00003.parquet"
    with pytest.raises(ValueError):
        schema.partition_path({**values, "lang": "a/b"}, schema.TOKEN_PARTITIONS)


def test_validate_names_the_bad_column():
    good = pa.table(
        {"id": ["a"], "source": ["m:1"], "stage": ["read"], "reason": ["bad_text"], "detail": [""]}
    )
    schema.validate(good.cast(schema.REJECT_SCHEMA), schema.REJECT_SCHEMA)
    bad = good.set_column(0, "id", pa.array([None], pa.string()))
    with pytest.raises(ValueError, match="'id'"):
        schema.validate(bad, schema.REJECT_SCHEMA)


def test_reject_reason_must_be_known():
    assert (
        Reject(id="x", source="m", stage="read", reason=Reason.PATH_ESCAPE).as_row()["reason"]
        == "path_escape"
    )
    with pytest.raises(ValueError):
        Reject(id="x", source="m", stage="read", reason="whatever")
