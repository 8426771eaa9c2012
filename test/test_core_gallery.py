"""Prototype math, open-set threshold, incremental enrollment, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from fskd_ros.core.classifier import PrototypeClassifier
from fskd_ros.core.gallery import Gallery, GalleryError, transform_features

DIM = 8


def _gallery(base_mean=None) -> Gallery:
    return Gallery("enc-a", DIM, base_mean)


def test_transform_subtracts_base_mean_and_normalises():
    base = np.full(DIM, 2.0, np.float32)
    out = transform_features(np.full((1, DIM), 3.0, np.float32) + np.eye(DIM)[0], base)
    expected = (np.ones(DIM) + np.eye(DIM)[0]) / np.linalg.norm(np.ones(DIM) + np.eye(DIM)[0])
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


def test_prototype_is_mean_of_transformed_shots_and_nearest_wins():
    rng = np.random.default_rng(0)
    base = rng.normal(size=DIM).astype(np.float32)
    gallery = _gallery(base)
    a = base + np.eye(DIM)[0] * 5 + rng.normal(scale=0.1, size=(3, DIM))
    b = base + np.eye(DIM)[1] * 5 + rng.normal(scale=0.1, size=(3, DIM))
    clf = PrototypeClassifier(gallery, threshold=0.5, top_k=2)
    clf.process_support_set(np.concatenate([a, b]), ["a"] * 3 + ["b"] * 3)
    labels, protos = gallery.prototype_matrix()
    mean_a = transform_features(a, base).mean(axis=0)
    np.testing.assert_allclose(protos[labels.index("a")], mean_a / np.linalg.norm(mean_a), rtol=1e-5)
    preds = clf.predict(np.stack([base + np.eye(DIM)[1] * 4, base + np.eye(DIM)[0] * 4]))
    assert [p.label for p in preds] == ["b", "a"]
    assert preds[0].top_labels == ["b", "a"] and preds[0].top_scores[0] > preds[0].top_scores[1]
    assert not preds[0].unknown


def test_threshold_marks_far_queries_unknown():
    gallery = _gallery()
    clf = PrototypeClassifier(gallery, threshold=0.5)
    gallery.add("a", np.eye(DIM)[:1])
    (pred,) = clf.predict(np.eye(DIM)[2:3])  # orthogonal: cosine 0
    assert pred.unknown and pred.label == "a" and abs(pred.score) < 1e-6
    (empty,) = PrototypeClassifier(_gallery()).predict(np.eye(DIM)[:1])
    assert empty.unknown and empty.label == ""


def test_incremental_enrollment_equals_batch_enrollment():
    rng = np.random.default_rng(1)
    shots = rng.normal(size=(5, DIM)).astype(np.float32)
    one_by_one, batch = _gallery(), _gallery()
    for row in shots:
        one_by_one.add("x", row[None])
    assert batch.add("x", shots) == 5
    np.testing.assert_allclose(one_by_one.prototype_matrix()[1], batch.prototype_matrix()[1], rtol=1e-5)
    assert one_by_one.version == 5 and batch.version == 1


@pytest.mark.parametrize("label", ["", "   ", " pad", "a" * 65, "bad\nlabel", "nul\x00"])
def test_bad_labels_are_refused(label):
    gallery = _gallery()
    with pytest.raises(GalleryError):
        gallery.add(label, np.ones((1, DIM)))
    assert len(gallery) == 0 and gallery.version == 0


def test_bad_embeddings_and_limits_are_refused():
    gallery = Gallery("enc-a", DIM, max_classes=1, max_shots_per_class=2)
    for bad in (np.zeros((0, DIM)), np.ones((1, DIM + 1)), np.full((1, DIM), np.nan)):
        with pytest.raises(GalleryError):
            gallery.add("a", bad)
    gallery.add("a", np.ones((2, DIM)))
    with pytest.raises(GalleryError, match="at most 2"):
        gallery.add("a", np.ones((1, DIM)))
    with pytest.raises(GalleryError, match="full"):
        gallery.add("b", np.ones((1, DIM)))
    assert gallery.shot_counts() == {"a": 2}


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    gallery = _gallery(rng.normal(size=DIM))
    gallery.add("crazing", rng.normal(size=(3, DIM)))
    gallery.add("scratches", rng.normal(size=(1, DIM)))
    path = gallery.save(tmp_path / "sub" / "gallery.npz")
    loaded = Gallery.load(path, encoder_id="enc-a")
    assert loaded.shot_counts() == {"crazing": 3, "scratches": 1}
    assert loaded.version == gallery.version
    np.testing.assert_allclose(loaded.prototype_matrix()[1], gallery.prototype_matrix()[1])
    assert [p.name for p in path.parent.iterdir()] == ["gallery.npz"]  # no temp file left


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    gallery = _gallery()
    gallery.add("a", np.ones((1, DIM)))
    path = gallery.save(tmp_path / "g.npz")
    with pytest.raises(GalleryError, match="encoder"):
        Gallery.load(path, encoder_id="enc-b")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(GalleryError, match="not a readable"):
        Gallery.load(corrupt)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, header=np.array([{"evil": 1}], dtype=object), shots=np.zeros((0, DIM)))
    with pytest.raises(GalleryError):
        Gallery.load(pickled)
    with pytest.raises(GalleryError, match="not found"):
        Gallery.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("header", [
    [1, 2], {"format": 1, "encoder_id": "enc-a", "embedding_dim": "x", "labels": [], "shots": []},
    {"format": 1, "encoder_id": "enc-a", "embedding_dim": DIM, "labels": ["a"], "shots": ["1"]},
    {"format": 1, "encoder_id": "enc-a", "embedding_dim": DIM, "labels": ["a"], "shots": [0]},
    {"format": 1, "encoder_id": "enc-a", "embedding_dim": DIM, "labels": ["a", "a"], "shots": [1, 1]},
    {"format": 1, "encoder_id": "enc-a", "embedding_dim": DIM, "labels": [" a"], "shots": [1]},
])
def test_malformed_headers_are_gallery_errors(tmp_path, header):
    import json

    path = tmp_path / "g.npz"
    count = 2 if isinstance(header, dict) and header.get("labels") == ["a", "a"] else 1
    np.savez(path, header=np.array(json.dumps(header)), shots=np.ones((count, DIM), np.float32),
             base_mean=np.zeros(DIM, np.float32))
    with pytest.raises(GalleryError):
        Gallery.load(path)


def test_nan_scores_are_unknown():
    gallery = _gallery()
    gallery.add("a", np.eye(DIM)[:1])
    (pred,) = PrototypeClassifier(gallery, threshold=-1.0).predict(np.full((1, DIM), np.nan))
    assert pred.unknown
