"""Two processes registering at once get distinct, complete versions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

from pipeline.registry import ModelRegistry

REPO_ROOT = Path(__file__).resolve().parents[2]
PER_WRITER = 5

# Each writer loads the same booster, signals "ready", waits for "go", then registers.
WRITER = """
import pathlib, sys, time
import xgboost
from pipeline.registry import ModelRegistry
root, model_file, writer, go, count = sys.argv[1:6]
booster = xgboost.Booster(model_file=model_file)
registry = ModelRegistry(pathlib.Path(root))
pathlib.Path(f"{go}.ready{writer}").touch()
deadline = time.monotonic() + 60
while not pathlib.Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.002)
for index in range(int(count)):
    registry.register(
        booster,
        features=["f0", "f1"],
        params={},
        data_range=("2018-04-01", "2018-04-02"),
        metrics={"writer": int(writer), "index": index},
    )
"""


def test_two_writers_at_once_get_distinct_versions(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(60, 2))
    booster = xgb.train(
        {"max_depth": 2, "nthread": 1},
        xgb.DMatrix(features, label=(features[:, 0] > 0).astype(int)),
        2,
    )
    model_file = tmp_path / "seed.ubj"
    booster.save_model(model_file)
    root, go = tmp_path / "registry", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(root),
                str(model_file),
                str(n),
                str(go),
                str(PER_WRITER),
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}.ready{n}").exists() for n in (1, 2)):
        assert time.monotonic() < deadline, "writers never became ready"
        assert all(w.poll() is None for w in writers), [
            w.stderr.read() for w in writers if w.stderr
        ]
        time.sleep(0.01)
    go.touch()
    results = [(w.wait(timeout=60), w.stderr.read() if w.stderr else "") for w in writers]
    assert [code for code, _ in results] == [0, 0], results

    registry = ModelRegistry(root)
    versions = registry.list_versions()
    assert [v.version for v in versions] == list(range(1, 2 * PER_WRITER + 1))
    by_writer = sorted((v.metrics["writer"], v.metrics["index"]) for v in versions)
    assert by_writer == sorted((n, i) for n in (1, 2) for i in range(PER_WRITER))
    for version in versions:
        loaded = registry.load(version.version)
        np.testing.assert_array_equal(
            loaded.booster.inplace_predict(features), booster.inplace_predict(features)
        )
