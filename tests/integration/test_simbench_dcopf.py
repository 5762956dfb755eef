"""``fpamm dcopf`` on SimBench's EHV grid saved with ``pandapower.to_json``: an answer.

Needs the optional extra ``simbench`` (``pip install -e ".[simbench]"``); skips without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

sb = pytest.importorskip(
    "simbench", reason="simbench not installed (optional extra: pip install -e '.[simbench]')"
)

REPO = Path(__file__).resolve().parents[2]
EHV = "1-EHV-mixed--0-no_sw"


def test_dcopf_answers_on_simbench_ehv(tmp_path: Path) -> None:
    import pandapower as pp

    path = tmp_path / "ehv.json"
    pp.to_json(sb.get_simbench_net(EHV), str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "fpamm_opt.cli", "dcopf", str(path), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_bus"] == 571
    # 338 gen + 225 sgen (renewables as curtailable generation) + 7 ext_grid
    assert out["n_gen"] == 570
    kinds = {e["kind"]: e for e in out["elements"]}
    assert kinds["sgen"]["count"] == 225 and "curtailable" in kinds["sgen"]["became"]
    assert "without cost" in kinds["gen"]["became"]
    assert out["status"] in ("optimal", "infeasible")
    if out["status"] == "optimal":
        assert out["objective"] is not None and out["reason"] is None
    else:
        assert out["reason"] and "\n" not in out["reason"]
