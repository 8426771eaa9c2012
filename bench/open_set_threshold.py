"""Pick the classifier's open-set threshold from data, with the runtime's own code.

Enrolls K shots of half the classes of a folder-per-class set, then scores
held-out images of the enrolled classes (should be accepted) and of the other
classes (should come out unknown), over several random splits. Prints, per
threshold, how many known frames are accepted and correctly labelled and how
many unknown frames are wrongly accepted.

    .venv/bin/python bench/open_set_threshold.py ../shared/data/neu-cls [--model M.onnx] [--shots 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

from fskd_ros.core.backends import create_backend
from fskd_ros.core.classifier import PrototypeClassifier
from fskd_ros.core.encoder_file import resolve_encoder_path
from fskd_ros.core.gallery import Gallery
from fskd_ros.core.preprocessing import load_image_file, preprocess_batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--model", default="default")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=40, help="images per class to encode")
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--output", help="JSON file for the table")
    args = parser.parse_args()
    backend = create_backend("onnxruntime", resolve_encoder_path(args.model))
    info = backend.info
    rng = random.Random(0)
    features = {}
    for class_dir in sorted(p for p in Path(args.data).iterdir() if p.is_dir()):
        files = sorted(class_dir.iterdir())
        rng.shuffle(files)
        images = [load_image_file(str(p)) for p in files[: args.per_class]]
        features[class_dir.name] = np.concatenate(
            [backend.encode(preprocess_batch(images[i:i + 32], info)) for i in range(0, len(images), 32)])
    labels = sorted(features)
    known_scores, known_correct, unknown_scores = [], [], []
    for _ in range(args.splits):
        enrolled = rng.sample(labels, len(labels) // 2)
        gallery = Gallery(info.encoder_id, info.embedding_dim, info.base_mean_array())
        classifier = PrototypeClassifier(gallery)
        queries = []
        for label in labels:
            order = list(range(len(features[label])))
            rng.shuffle(order)
            if label in enrolled:
                gallery.add(label, features[label][order[: args.shots]])
                queries += [(features[label][i], label) for i in order[args.shots:]]
            else:
                queries += [(features[label][i], None) for i in order]
        predictions = classifier.predict(np.stack([q for q, _ in queries]))
        for prediction, (_, truth) in zip(predictions, queries):
            if truth is None:
                unknown_scores.append(prediction.score)
            else:
                known_scores.append(prediction.score)
                known_correct.append(prediction.label == truth)
    known_scores, known_correct = np.array(known_scores), np.array(known_correct)
    unknown_scores = np.array(unknown_scores)
    rows = []
    print(f"encoder {info.encoder_id}, {args.shots} shots, {len(labels) // 2} enrolled of {len(labels)} classes")
    print(f"{'threshold':>9} {'known accepted':>15} {'known correct':>14} {'unknown accepted':>17}")
    for threshold in np.round(np.arange(0.0, 0.95, 0.05), 2):
        accepted = known_scores >= threshold
        row = {"threshold": float(threshold), "known_accepted": float(accepted.mean()),
               "known_accepted_and_correct": float((accepted & known_correct).mean()),
               "unknown_accepted": float((unknown_scores >= threshold).mean())}
        rows.append(row)
        print(f"{threshold:9.2f} {row['known_accepted']:15.1%} {row['known_accepted_and_correct']:14.1%} "
              f"{row['unknown_accepted']:17.1%}")
    if args.output:
        Path(args.output).write_text(json.dumps({"encoder_id": info.encoder_id, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
