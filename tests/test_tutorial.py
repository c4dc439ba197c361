"""The tutorial notebook runs from top to bottom, in a real Jupyter kernel, and says what it should."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).parents[1] / "docs" / "tutorial.ipynb"


def test_the_tutorial_runs_from_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "the notebook is kept without outputs"
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "test ROC AUC" in text and "on spatial blocks" in text
    assert "array([" in text  # the model's probabilities for a few cells
    assert "<asm_dask.Run run in" in text and "<asm_dask.Run predict in" in text
    # the run and the prediction show their map in the notebook, and the figures are drawn
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert sum("iframe srcdoc=" in page for page in html) == 2
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
    assert (tmp_path / "tutorial" / "run" / "report.html").is_file()
    assert (tmp_path / "tutorial" / "neighbour_map" / "model_card.json").is_file()
