"""Round 3: what must stay bounded or be checked at the moment it is used
(reliability issue, items 14, 15 and 18): a huge ``--top-k``, a shell
command that stalls, a clip swapped for a symlink after its path was checked.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from datastore import storage
from datastore.records import AudioExample, Reason, Reject
from tests.reliability.catalogue import SR, encoded, tone
from tokenizer import audio, containers


# -- 14: search --top-k 1000000000 --------------------------------------------------------
def test_top_k_is_clamped_to_the_rows(tmp_path):
    """faiss allocates ``k`` results per query: a huge k took 22 GB."""
    import faiss

    from datastore import schema, shards
    from trainer.embed import FAISS_FILE, embedding_table, listed_file
    from trainer.embed import Item as EmbedItem
    from trainer.search import top_hits

    vectors = np.eye(4, dtype=np.float32)
    items = [EmbedItem(id=f"s{i}", lang="fr", modality="text", text=f"t{i}") for i in range(4)]
    info = shards.write_shard(
        embedding_table(items, vectors),
        out_dir=str(tmp_path),
        kind=schema.EMBEDDINGS_DIR,
        index=0,
        config=shards.WriteConfig(),
    )
    index = faiss.IndexFlatIP(4)
    index.add(vectors)
    data = faiss.serialize_index(index).tobytes()
    (tmp_path / FAISS_FILE).write_bytes(data)
    shards.Index(
        job="embed",
        config={},
        counts={"input": 4, "accepted": 4, "rejected": 0},
        shards=shards.shard_dicts([info]),
        files=[listed_file(FAISS_FILE, data)],
    ).write(str(tmp_path))
    hits = top_hits(str(tmp_path), vectors[2], 1_000_000_000)
    assert hits[0][1] == 2 and len(hits) == 4
    # a faiss file from another embed run (here: 3 vectors) is refused, not searched
    other = faiss.IndexFlatIP(4)
    other.add(vectors[:3])
    (tmp_path / FAISS_FILE).write_bytes(faiss.serialize_index(other).tobytes())
    with pytest.raises(ValueError, match="not the file its embed run wrote"):
        top_hits(str(tmp_path), vectors[0], 2)


# -- 15: a stalled --allow-commands pipe ----------------------------------------------------
def test_a_stalled_command_pipe_is_killed_with_its_children(monkeypatch):
    """``sleep 600 | cat``: killing the shell alone leaves ``sleep`` holding the
    pipe, and the read never ends."""
    monkeypatch.setattr(containers, "COMMAND_TIMEOUT_S", 1.0)
    started = time.monotonic()
    with pytest.raises(audio.AudioError) as failed:
        containers.run_command("sleep 600 | cat", audio.AudioConfig())
    assert time.monotonic() - started < 30
    assert failed.value.reason == Reason.DECODE_ERROR
    assert not _sleepers(600), "the pipe's children outlived the timeout"


def _sleepers(seconds: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        if cmdline[:2] == [b"sleep", str(seconds).encode()]:
            found.append(int(pid))
    return found


# -- 18: --confine-audio-to checks the file it opens ----------------------------------------
def test_a_clip_swapped_for_a_symlink_after_the_check_is_refused(tmp_path):
    root, outside = tmp_path / "corpus", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    clip = root / "a.wav"
    clip.write_bytes(encoded(tone(1.0, SR), SR, "WAV", "PCM_16"))
    (outside / "b.wav").write_bytes(encoded(tone(1.0, SR, (500.0,)), SR, "WAV", "PCM_16"))
    uri = storage.resolve_under(str(root), "a.wav", confine=str(root))  # the reader's check
    example = AudioExample(id="a", uri=uri, text="t", lang="fr", split="train", corpus="c")
    clip.unlink()
    clip.symlink_to(outside / "b.wav")  # swapped between the check and the read
    result = audio.prepare(example, audio.AudioConfig())
    assert isinstance(result, Reject) and result.reason == Reason.PATH_ESCAPE
    assert str(outside / "b.wav") in result.detail
    # a clip that stays what was checked reads as before
    clip.unlink()
    clip.write_bytes(encoded(tone(1.0, SR), SR, "WAV", "PCM_16"))
    assert not isinstance(audio.prepare(example, audio.AudioConfig()), Reject)
