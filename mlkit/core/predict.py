"""The one predict skeleton every task shares: read records, batch what is already available, write and flush
one output per record, in input order.

A reader thread turns input lines into a queue; the writer takes the first waiting line (blocking), then every
line already queued up to the batch size (never waiting for more), so a line typed into a pipe is answered at
once, and a large file still runs in full batches. A bad record stops the run with exit 3 only after the
outputs of every earlier record are written (`--on-error skip` writes an error row for it and goes on).

Output rows (documented in docs/adding-a-task.md, checked by `check_row`): every JSON row has "id" (the
record's identifier: a node/graph id, a path, or the 1-based input line number); classification-like rows add
"label" (int, or a list of ints when multi-label) and "probs" (list of floats); scored rows add "score";
span rows add "text" and "entities" (each {"start", "end", "type", "text"}); regression rows add "value" (list
of floats); an error row is {"id", "error"}.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mlkit.core.errors import DataError, MlkitError

_END = object()


def _raw_stdin() -> Iterator[bytes]:
    """stdin's lines as bytes, read with os.read: the reader thread then holds no lock of sys.stdin's buffer, so
    the interpreter can shut down while it waits for input (a buffered read there aborts the process)."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced stdin (tests): its own iterator
        yield from sys.stdin.buffer
        return
    rest = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


def read_lines(source: str) -> Iterator[str]:
    """Input lines without their newline from a file or stdin ('-'), lazily; bad UTF-8 is exit 3."""
    if source == "-":
        stream: Any = _raw_stdin()
        where = "stdin"
    else:
        p = Path(source)
        if not p.is_file():
            raise DataError(f"input not found: {p}", None, "Pass an existing file to --input, or pipe into stdin.")
        stream = p.open("rb")
        where = str(p)
    try:
        for n, raw in enumerate(stream, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"input is not valid UTF-8 at byte {exc.start}", f"{where} line {n}",
                                "Convert the file to UTF-8.") from None  # fmt: skip
            if n == 1:
                line = line.removeprefix("\ufeff")
            yield line.rstrip("\n").rstrip("\r")
    finally:
        if source != "-":
            stream.close()


def open_records(source: str, task: Any, spec: Any) -> Iterable[str]:
    """The input lines of --input: a file, stdin, or a folder the task can expand."""
    if source != "-" and Path(source).is_dir():
        records = task.expand_input(Path(source))
        if records is None:
            raise DataError(f"--input is a folder: {source}", None, f"Give a file with {spec.inputs}, one per line.")
        return records
    return read_lines(source)


def _reader(lines: Iterable[str], q: queue.Queue) -> None:
    try:
        for line in lines:
            q.put(line)
    except BaseException as exc:  # noqa: BLE001 - handed to the writer, raised there in order
        q.put(exc)
    q.put(_END)


def batches(lines: Iterable[str], size: int) -> Iterator[list[Any]]:
    """Lists of lines (or a trailing exception) holding what is available now, at most `size` each."""
    q: queue.Queue = queue.Queue(maxsize=max(4 * size, 256))
    threading.Thread(target=_reader, args=(lines, q), daemon=True).start()
    done = False
    while not done:
        batch = [q.get()]
        while len(batch) < size and batch[-1] is not _END and not isinstance(batch[-1], BaseException):
            try:
                batch.append(q.get_nowait())
            except queue.Empty:
                break
        if batch[-1] is _END:
            batch.pop()
            done = True
        if batch:
            yield batch
        if batch and isinstance(batch[-1], BaseException):
            return


def stream(p: Any, restored: Any, lines: Iterable[str], out_path: str, size: int, on_error: str) -> None:
    """Parse, predict and write every record; flush after each batch (one line per record)."""
    from mlkit.core.console import emit

    out = sys.stdout if out_path == "-" else open(out_path, "w", encoding="utf-8")  # noqa: SIM115
    n = 0
    try:
        for batch in batches(lines, max(1, size)):
            pending: list[tuple[int, Any]] = []
            failure: BaseException | None = None
            rows: list[tuple[int, Any]] = []
            for item in batch:
                if isinstance(item, BaseException):
                    failure = item
                    break
                n += 1
                try:
                    pending.append((n, p.task.parse_record(p.cfg, restored, item, n)))
                except DataError as exc:
                    if on_error != "skip":
                        failure = exc
                        break
                    rows.append((n, {"id": n, "error": exc.line().removeprefix("error: ")}))
            if pending:
                outs = p.task.predict_batch(p.cfg, p.ctx, restored, [r for _, r in pending])
                rows.extend(zip([k for k, _ in pending], outs))
            for _, row in sorted(rows, key=lambda t: t[0]):
                if isinstance(row, str):
                    out.write(row if row.endswith("\n") else row + "\n")
                else:
                    emit(row, out)
            out.flush()
            if failure is not None:
                raise failure
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        if out is not sys.stdout:
            out.close()


ROW_KINDS = ("classification", "score", "spans", "regression")


def check_row(row: Any, kind: str) -> None:
    """Raise ValueError when a predict row does not follow the documented schema of its kind."""
    if isinstance(row, str):
        return
    if not isinstance(row, dict) or "id" not in row:
        raise ValueError(f"row lacks 'id': {row!r}")
    if "error" in row:
        return
    num = (int, float)
    if kind == "classification":
        label = row.get("label")
        ok = isinstance(label, int) or (isinstance(label, list) and all(isinstance(v, int) for v in label))
        if not ok or not isinstance(row.get("probs"), list) or not all(isinstance(v, num) for v in row["probs"]):
            raise ValueError(f"classification row needs int 'label' and list 'probs': {row!r}")
    elif kind == "score":
        if not isinstance(row.get("score"), num) or not isinstance(row.get("label"), int):
            raise ValueError(f"score row needs float 'score' and int 'label': {row!r}")
    elif kind == "regression":
        if not isinstance(row.get("value"), list) or not all(isinstance(v, num) for v in row["value"]):
            raise ValueError(f"regression row needs a list 'value': {row!r}")
    elif kind == "spans":
        if not isinstance(row.get("text"), str) or not isinstance(row.get("entities"), list):
            raise ValueError(f"span row needs 'text' and 'entities': {row!r}")
        for e in row["entities"]:
            if not {"start", "end", "type", "text"} <= set(e):
                raise ValueError(f"entity lacks start/end/type/text: {e!r}")
    else:
        raise ValueError(f"unknown row kind '{kind}' (one of {ROW_KINDS})")


__all__ = ["MlkitError", "batches", "check_row", "open_records", "read_lines", "stream"]
