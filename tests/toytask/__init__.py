"""The template task (test-only): logistic regression / an MLP on a two-column CSV.

It shows every piece a task has: SPEC and TINY here (light: no torch), config.yaml (every key commented),
data.py (the real layout, its generator and a loader that raises DataError), model.py (nn.Modules only),
task.py (the hooks), cli.py (an extra verb). docs/adding-a-task.md walks through it.
"""

from mlkit.core.registry import Flag, TaskSpec

SPEC = TaskSpec(
    name="toy",
    method="logistic regression (test-only task)",
    paper="none",
    metrics=("test/accuracy", "test/loss"),
    monitor="val/accuracy",
    layout="<root>/data.csv with a header x1,x2,label and one sample per row",
    inputs="'x1,x2' per line",
    flags=(Flag("--hidden", "hidden", int, "Hidden width.", modes=("train",)),),
    verbs={"synth": "toytask.cli:synth"},
    rows="classification",
)

TINY = {"epochs": 2}
