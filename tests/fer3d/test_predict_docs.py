"""docs/predict.md's Python example runs as written (a user's fresh process, an empty
folder): synthetic data, a final model, predictions of a new face and of arrays."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def example() -> str:
    """The python block of the "## Python" section."""
    text = (REPO / "docs" / "predict.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-c", example()], cwd=tmp_path, text=True,
                          capture_output=True, env={"PYTHONPATH": str(REPO)}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()[-4:]  # the example's prints, after prep's and train's
    assert lines[0].startswith("['anger', 'disgust', 'fear', 'happiness', 'sadness', "
                               "'surprise'] prepared at 32 px"), lines
    sample, label, _, predicted, landmarks = lines[1].split()
    assert (sample, label, landmarks) == ("F0100_HA04AE", "happiness", "native")
    assert abs(float(lines[2]) - 1.0) < 1e-5
    labels, sums = lines[3].split("] [")  # "['fear', ...] [1.  0.99999994 ...]"
    names = re.findall(r"'(\w+)'", labels)
    assert len(names) == 4 and set(names) <= set(re.findall(r"'(\w+)'", lines[0]))
    assert [abs(float(x) - 1.0) < 1e-5 for x in sums.rstrip("]").split()] == [True] * 4
    assert (tmp_path / "work" / "model" / "model_card.json").is_file()
