"""A re-tuned decoder replaces a shipped model without orphaning its streams: the new weights
list the ids whose streams they decode (same analysis, so the same symbols), and the decoder
finds them by those ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import satcodec
from satcodec.bitstream import StreamReader
from satcodec.codec.registry import (
    DECODES_KEY,
    decoded_model_ids,
    find_weights_by_id,
    load_weights,
    save_model,
)
from satcodec.errors import UnknownModelError
from satcodec.shipping import earlier_ids_decoded
from tests.conftest import tiny_stride8_model


def _retuned(seed: int = 11):
    """The model of ``seed`` with its synthesis changed, its analysis untouched."""
    net = tiny_stride8_model(seed)
    with torch.no_grad():
        for p in net.synthesis_transform.parameters():
            p.mul_(1.01)
    return net


def test_the_successor_decodes_the_streams_of_the_model_it_replaced(
    tmp_path, sample_array, monkeypatch
):
    monkeypatch.setenv("SATCODEC_MODEL_PATH", "")
    old_path = tmp_path / "old" / "rung.safetensors"
    old_path.parent.mkdir()
    old_id = save_model(old_path, tiny_stride8_model(11), {"lmbda": 0.001})
    img = np.ascontiguousarray(sample_array[:, :128, :128])
    stream = satcodec.encode(img, quality=50, model=old_path)
    assert StreamReader(stream).header.model_id == old_id

    new_path = tmp_path / "new" / "rung.safetensors"
    new_path.parent.mkdir()
    decodes = earlier_ids_decoded(_retuned(), old_path, {})
    assert decodes == [old_id]  # the analysis tensors compared equal
    new_id = save_model(new_path, _retuned(), {"lmbda": 0.001, DECODES_KEY: decodes})
    assert new_id != old_id

    # the old weights gone: the stream's id resolves to its successor, which decodes it
    found = find_weights_by_id(old_id, [new_path])
    assert found.info.model_id == new_id
    out, meta = satcodec.decode(stream, model_paths=[new_path])
    ref, _ = satcodec.decode(stream, model_paths=[old_path])
    assert out.shape == img.shape and meta["model"] == "rung"
    assert 0 < np.abs(out.astype(int) - ref.astype(int)).max() < 200  # its own synthesis
    # an exact id wins over a successor when both are installed
    assert find_weights_by_id(old_id, [new_path, old_path]).info.model_id == old_id


def test_a_model_with_another_analysis_decodes_nothing_of_its_namesake(tmp_path, monkeypatch):
    monkeypatch.setenv("SATCODEC_MODEL_PATH", "")
    old_path = tmp_path / "rung.safetensors"
    old_id = save_model(old_path, tiny_stride8_model(11), {})
    # retrained end to end: another analysis, another symbol stream
    assert earlier_ids_decoded(tiny_stride8_model(12), old_path, {}) == []
    # a decoder-only run names its init (tune-decoder froze the analysis)
    run = {"decoder_only": True, "init": {"model": "x", "model_id": "ab" * 16}}
    assert earlier_ids_decoded(tiny_stride8_model(12), old_path, run) == ["ab" * 16]
    other = tmp_path / "other.safetensors"
    save_model(other, tiny_stride8_model(12), {})
    with pytest.raises(UnknownModelError):
        find_weights_by_id(old_id, [other])


def test_malformed_successor_lists_are_ignored(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, tiny_stride8_model(11), {DECODES_KEY: ["short", 7, "cd" * 16]})
    assert decoded_model_ids(load_weights(path).info) == ["cd" * 16]
    save_model(path, tiny_stride8_model(11), {DECODES_KEY: "cd" * 16})
    assert decoded_model_ids(load_weights(path).info) == []
