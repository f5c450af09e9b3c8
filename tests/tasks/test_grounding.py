"""grounding: losses and the lambda ramp, then the CLI end to end on a tiny synthetic set and on a fixture in the
real Flickr30K Entities layout (train -> eval -> predict with PNGs), and exit 3 on malformed files."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(
    0, str(Path(__file__).parent)
)  # the real-layout fixture writer lives in test_grounding_data.py
from test_grounding_data import tiny_flickr  # noqa: E402

from mlkit.cli import main
from mlkit.tasks.grounding.loss import image_sentence, info_nce, ramp

TINY = ["--set", "epochs=2", "--set", "synth.train=48", "--set", "synth.val=12", "--set", "synth.test=12",
        "--set", "mlp_hidden=64", "--set", "dim=32", "--set", "lstm_hidden=32", "--set", "viz=2",
        "--device", "cpu", "--quiet"]  # fmt: skip


def test_lambda_ramp_values() -> None:
    assert [ramp(s) for s in (0, 499, 500, 1500, 10_000)] == pytest.approx([0.001, 0.001, 1.001, 3.0, 3.0])
    assert ramp(1000) == pytest.approx(2.001)


def test_info_nce_of_constant_logits_is_log_b() -> None:
    for b in (2, 7, 32):
        assert float(info_nce(torch.full((b, b), 3.0))) == pytest.approx(-math.log(1 / b), abs=1e-6)
    img = torch.tensor(
        [0, 0, 1, 2]
    )  # sentences 0 and 1 describe the same image: each other's negative is masked
    assert float(info_nce(torch.zeros(4, 4), img)) == pytest.approx(
        (2 * math.log(3) + 2 * math.log(4)) / 4, abs=1e-6
    )


def test_image_sentence_max_before_sum_and_masks() -> None:
    s = torch.zeros(2, 2, 2, 3)
    s[0, 0, 1, 2] = 0.9  # phrase 0 of sentence 0 vs a *padded* region of image 1: must not count
    s[0, 0, 1, 0] = 0.4
    s[0, 1, 1, 1] = 0.3
    s[0, 1, 0, :] = 7.0  # phrase 1 of sentence 0 is padding: must not count
    rmask = torch.tensor([[True, True, True], [True, True, False]])
    pmask = torch.tensor([[True, False], [True, True]])
    out = image_sentence(s, rmask, pmask, 2.0)
    assert float(out[0, 1]) == pytest.approx(2 * 0.4) and float(out[0, 0]) == pytest.approx(0.0)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_synth_train_eval_predict_pngs(tmp_path: Path, runs_dir: Path, capsys) -> None:
    rc, out, err = _run(["grounding", "train", "--project", str(runs_dir), "--json", *TINY], capsys)
    assert rc == 0, err[-2000:]
    run = Path(json.loads(out)["run_dir"])
    m = json.loads(out)["metrics"]
    for k in ("test/r1", "test/r5", "test/pointing", "test/upper_bound", "test/baseline/random/r1",
              "test/baseline/centre/r1", "test/baseline/detector/r1"):  # fmt: skip
        assert 0.0 <= m[k] <= 1.0, k
    assert (run / "eval.md").read_text().startswith("| method |") and (run / "phrase_to_label.json").is_file()
    assert len(list((run / "viz").glob("*_heat.png"))) == 2
    rc, out, err = _run(["grounding", "eval", "--model", str(run / "weights" / "best.pt"), "--json", "--device",
                         "cpu", "--quiet"], capsys)  # fmt: skip
    assert rc == 0, err
    assert json.loads(out)["metrics"]["test/r1"] == pytest.approx(m["test/r1"])
    from mlkit.tasks.grounding.task import TASK

    recs = TASK.sample_inputs(run)
    recs.append(json.dumps({"image": json.loads(recs[0])["image"], "phrase": "a purple plus"}))
    lone = (
        tmp_path / "lone" / "img.jpg"
    )  # no features next to it: fallback proposals + handcrafted descriptors
    lone.parent.mkdir()
    lone.write_bytes(Path(json.loads(recs[0])["image"]).read_bytes())
    recs.append(json.dumps({"image": str(lone), "phrase": "a red ball"}))
    save, inp, outp = tmp_path / "pred", tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("\n".join(recs) + "\n")
    model = str(run / "weights" / "best.pt")
    rc, out, err = _run(["grounding", "predict", "--model", model, "--device", "cpu", "--quiet", "--save", str(save),
                         "--input", str(inp), "--output", str(outp)], capsys)  # fmt: skip
    assert rc == 0, err
    rows = [json.loads(x) for x in outp.read_text().splitlines()]
    assert len(rows) == 5 and all(len(r["box"]) == 4 and isinstance(r["score"], float) for r in rows)
    assert all(Path(r["png"]).is_file() and Path(r["heatmap"]).is_file() for r in rows)
    inp.write_text(recs[0] + "\nnot json\n")
    rc, out, err = _run(["grounding", "predict", "--model", model, "--device", "cpu", "--quiet", "--input", str(inp),
                         "--output", str(outp)], capsys)  # fmt: skip
    assert rc == 3 and len(outp.read_text().splitlines()) == 1
    assert "input line 2" in err.strip().splitlines()[-1]


def test_cli_real_layout_fixture(tmp_path: Path, runs_dir: Path, capsys) -> None:
    root = tiny_flickr(tmp_path / "flickr")
    args = ["grounding", "train", "--data", str(root), "--project", str(runs_dir), "--json", "--set", "batch_size=4",
            *TINY]  # fmt: skip
    rc, out, err = _run(args, capsys)
    assert rc == 0, err[-2000:]
    run = Path(json.loads(out)["run_dir"])
    assert json.loads((run / "phrase_to_label.json").read_text())["a man"] == "man"
    rc, out, err = _run(["grounding", "train", "--data", str(root), "--project", str(runs_dir), "--no-distill",
                         "--set", "batch_size=4", *TINY], capsys)  # fmt: skip
    assert rc == 0, err[-2000:]
    rc, out, err = _run(
        ["grounding", "eval", "--model", str(run), "--json", "--quiet", "--gt-mode", "any"], capsys
    )
    assert rc == 0, err
    inp, outp = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"image": "1011", "phrase": "the hat"}) + "\n")
    rc, out, err = _run(["grounding", "predict", "--model", str(run / "weights" / "best.pt"), "--device", "cpu",
                         "--quiet", "--input", str(inp), "--output", str(outp)], capsys)  # fmt: skip
    assert rc == 0, err
    assert json.loads(outp.read_text())["id"] == "1011"


@pytest.mark.parametrize("what", ["bracket", "xml"])
def test_cli_malformed_files_exit_3_naming_file_and_line(
    tmp_path: Path, runs_dir: Path, what: str, capsys
) -> None:
    root = tiny_flickr(tmp_path / "bad")
    if what == "bracket":
        p = root / "Sentences" / "1004.txt"
        lines = p.read_text().splitlines()
        lines[1] = lines[1].replace("[/EN#41/people Two men]", "[/EN#41/people Two men")
        p.write_text("\n".join(lines) + "\n")
        want = f"{p} line 2"
    else:
        p = root / "Annotations" / "1005.xml"
        p.write_text(p.read_text().replace("<xmax>120</xmax>", "<xmax>999</xmax>").replace("><", ">\n<"))
        want = f"{p} line "
    rc, out, err = _run(
        ["grounding", "train", "--data", str(root), "--project", str(runs_dir), *TINY], capsys
    )
    last = err.strip().splitlines()[-1]
    assert rc == 3 and want in last and last.startswith("error: "), err
    assert not out


@pytest.mark.gpu
def test_cuda_train_matches_the_cpu_pipeline(runs_dir: Path, capsys) -> None:
    args = [a if a != "cpu" else "cuda" for a in TINY]
    rc, out, err = _run(["grounding", "train", "--project", str(runs_dir), "--json", *args], capsys)
    assert rc == 0, err[-2000:]
    assert 0.0 <= json.loads(out)["metrics"]["test/r1"] <= 1.0
