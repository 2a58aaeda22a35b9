"""The typed records that tie tokens to audio: JSON round trips, the match rule,
and the one reader of a tokenize index's codebook keys."""

import json

import numpy as np
import pytest

from datastore.identity import CodebookRef, FeatureIdentity
from kmeans import Codebook

WHISPER = FeatureIdentity(encoder="whisper-base", layer=3, mode="unpadded", frame_rate=50, dim=512)


def test_identity_round_trips_through_json_with_normalised_types():
    record = json.loads(json.dumps(WHISPER.as_dict()))
    assert record == {
        "encoder": "whisper-base",
        "layer": 3,
        "mode": "unpadded",
        "frame_rate": 50.0,
        "dim": 512,
    }
    assert FeatureIdentity.from_dict(record) == WHISPER
    assert "dim" not in WHISPER.as_dict(with_dim=False)
    assert FeatureIdentity.from_dict({"encoder": "x"}) is None  # no frame rate: not an identity
    assert FeatureIdentity.from_dict(None) is None
    assert WHISPER.token_rate(2) == 25.0


def test_mismatch_names_the_first_differing_key_and_ignores_absent_ones():
    assert WHISPER.mismatch(WHISPER.as_dict(), "codebook was fitted") is None
    assert WHISPER.mismatch({"encoder": "whisper-base"}, "codebook was fitted") is None
    why = WHISPER.mismatch({**WHISPER.as_dict(), "layer": 4}, "codebook was fitted")
    assert why == "codebook was fitted with layer=4 but the encoder gives layer=3"
    assert "mode=None" in WHISPER.mismatch({"mode": None}, "codebook was fitted")


def test_codebook_ref_from_a_codebook_and_back_from_its_index_fields(tmp_path):
    codebook = Codebook(np.eye(4, 3, dtype=np.float32)).with_metadata(
        encoder="mfcc", layer=0, frame_rate=100.0
    )
    ref = codebook.ref(str(tmp_path / "cb"))
    assert (ref.id, ref.k, ref.sha256) == (codebook.id, 4, codebook.sha256)
    assert CodebookRef.from_index(ref.index_fields()) == ref
    # An index from before codebook_uri: the job's --codebook as typed stands in.
    old = {"codebook": ref.id, "codebook_sha256": ref.sha256}
    assert CodebookRef.from_index(old, {"codebook": "cb"}).uri == "cb"
    assert CodebookRef.from_index({}) is None


def test_codebook_ids_that_do_not_parse_or_disagree_are_refused():
    sha = "0123abcd" + "0" * 56
    assert CodebookRef.from_id("whisper-base-L3-k256-0123abcd", sha).k == 256
    assert CodebookRef.from_id("unknown-L-1-k8-0123abcd").k == 8  # before metadata
    with pytest.raises(ValueError, match="is not"):
        CodebookRef.from_id("whisper-base-k256")
    with pytest.raises(ValueError, match="does not match"):
        CodebookRef.from_id("whisper-base-L3-k256-ffffffff", sha)
