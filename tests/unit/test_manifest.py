"""The versioned manifest dataclass (fpamm_opt.io.manifest.Manifest): every version written so
far reads, an unreadable one fails with one line naming it, the verifier reads through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fpamm_opt.errors import ManifestError, RunDirectoryError
from fpamm_opt.io.manifest import (
    MANIFEST_VERSION,
    READABLE_VERSIONS,
    Manifest,
    build_manifest,
    complete_manifest,
)
from fpamm_opt.verify import RunContext, verify_run
from fpamm_opt.verify.feasibility import ClearingClaim, clearing_claim
from fpamm_opt.verify.synthetic import synthetic_run

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "issue13"


def _fixture(version: int) -> dict:
    for path in sorted(FIXTURES.glob("*/manifest.json")):
        data = json.loads(path.read_text())
        if data.get("manifest_version") == version:
            return data
    raise AssertionError(f"no fixture manifest of version {version}")


def test_the_run_loop_writes_the_newest_readable_version() -> None:
    assert MANIFEST_VERSION == max(READABLE_VERSIONS)
    start = build_manifest({"run": {"policy": "equal"}}, "h", seed=3, policy="equal")
    done = complete_manifest(
        start, {"summary": {}}, spec_hash="h", n_intervals=4, tables={}, write_s=0
    )
    m = Manifest.from_dict(done)
    assert (m.version, m.status, m.spec_hash, m.seed, m.policy) == (
        MANIFEST_VERSION,
        "complete",
        "h",
        3,
        "equal",
    )


@pytest.mark.parametrize("version", [2, 3])
def test_stored_manifests_of_earlier_releases_read(version: int) -> None:
    data = _fixture(version)
    m = Manifest.from_dict(data)
    assert m.version == version and m.resolved and m.marks_final_rule
    assert m.rule == data["mechanism_resolved"]["rule"]
    assert m.network is not None and m.network["case"] == data["spec"]["network"]["case"]
    assert m.checks == tuple(data["checks"])  # prefixes, as those releases wrote them
    ctx = RunContext.from_manifest(data)
    assert ctx == RunContext.from_manifest(m)
    assert ctx.beta == data["mechanism_resolved"]["beta"] and ctx.policy == data["policy"]


def test_version_1_is_a_manifest_without_a_version() -> None:
    run = synthetic_run(8)
    assert "manifest_version" not in run.manifest
    m = Manifest.from_dict(run.manifest)
    assert m.version == 1 and not m.marks_final_rule and not m.resolved
    assert m.policy == "fpamm" and m.network is not None and m.network["case"] == "case14"
    v1 = {"manifest_version": 1, "mechanism_resolved": {"rule": "qp"}}
    assert clearing_claim(v1) == ClearingClaim("qp", "max", final_marks=False)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            5,
            "manifest version 5 cannot be read (this fpamm-opt reads versions 1-4): written by a newer",
        ),
        (0, "manifest version 0 cannot be read"),
        ("three", "manifest_version 'three' is not a version number"),
        (2.5, "manifest_version 2.5 is not a version number"),
    ],
)
def test_an_unreadable_version_fails_with_one_line_naming_it(raw: object, says: str) -> None:
    with pytest.raises(ManifestError) as exc:
        Manifest.from_dict({"manifest_version": raw})
    msg = str(exc.value)
    assert msg.startswith(says) and "\n" not in msg
    assert isinstance(exc.value, RunDirectoryError)


def test_the_verifier_reports_an_unreadable_version(tmp_path: Path) -> None:
    run = synthetic_run(8)
    run.manifest["manifest_version"] = MANIFEST_VERSION + 1
    with pytest.raises(ManifestError, match=f"manifest version {MANIFEST_VERSION + 1}"):
        verify_run(run.data())


def test_key_paths_of_hand_built_manifests() -> None:
    m = Manifest.from_dict(
        {
            "spec": {
                "mechanism": {"policy": "lmp", "theta": 0.2, "rule": "QP"},
                "scenario": {"interval_minutes": 15, "weak_node": 4},
                "solver": {"cost_model": "Quadratic"},
            },
            "network": {"case": "case57"},
        }
    )
    assert (m.policy, m.rule, m.cost_model, m.weak_node, m.interval_h) == (
        "lmp",
        "qp",
        "quadratic",
        4,
        0.25,
    )
    assert m.mechanism_float("trigger_theta", 0.0, "theta") == 0.2
    assert m.network == {"case": "case57"} and not m.resolved
