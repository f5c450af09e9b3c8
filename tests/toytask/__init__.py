"""A tiny test-only task (logistic regression on a CSV) that exercises every convention of the task contract."""

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
)

TINY = {"epochs": 2}
SAMPLE_INPUTS = ["0.5,0.5", "-1,-1", "2,1"]
