"""What a run reports: TensorBoard event files that another reader parses (tensorboardX's protocol buffers and
CRCs), written without importing torch; plain progress lines when the output is not a terminal."""

import io
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from bertjax import reporting


def _records(path):
    from tensorboardX.record_writer import masked_crc32c

    data, records, offset = path.read_bytes(), [], 0
    while offset < len(data):
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[offset + 8:offset + 12])[0] == masked_crc32c(header)
        body = data[offset + 12:offset + 12 + length]
        assert struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])[0] == masked_crc32c(body)
        records.append(body)
        offset += 16 + length
    return records


def test_event_files_parse_as_tensorboard_events(tmp_path):
    from tensorboardX.proto.event_pb2 import Event

    writer = reporting.MetricWriter(tmp_path)
    writer.write(10, "train", {"loss": 5.25, "learning_rate": 1e-4})
    writer.write(300, "eval", {"mlm_accuracy": 0.125})
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    events = [Event.FromString(record) for record in _records(path)]
    assert events[0].file_version == "brain.Event:2"
    scalars = [(event.step, value.tag, value.simple_value) for event in events[1:] for value in event.summary.value]
    assert scalars == [(10, "train/loss", 5.25), (10, "train/learning_rate", np.float32(1e-4)),
                       (300, "eval/mlm_accuracy", 0.125)]
    assert all(event.wall_time > 1.7e9 for event in events)
    assert '"split": "eval"' in (tmp_path / "metrics.jsonl").read_text()


def test_reporting_imports_neither_torch_nor_tensorboardx():
    result = subprocess.run([sys.executable, "-c", "import sys, bertjax.reporting; "
                             "print(sorted({'torch', 'tensorboardX'} & set(sys.modules)))"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_plain_progress_is_one_parseable_line_per_log():
    stream = io.StringIO()  # not a terminal: "auto" writes lines
    progress = reporting.Progress(0, 6, "auto", stream=stream)
    assert progress.plain
    for step in range(1, 7):
        progress.update()
        if step % 2 == 0:
            progress.show({"loss": f"{6.5 - step:.4f}", "lr": "1.00e-03", "tokens/s": "12,345",
                           "input_wait": "3%"})
    progress.write("step 6 evaluation: mlm_loss 5.0")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 4
    pattern = re.compile(r"step (\d+)/6 loss ([\d.]+) lr ([\d.e+-]+) tokens/s ([\d,]+) input_wait (\d+)% eta "
                         r"(\d+:\d\d:\d\d)$")
    assert [int(pattern.match(line).group(1)) for line in lines[:3]] == [2, 4, 6]
    assert pattern.match(lines[2]).group(6) == "0:00:00" and lines[3] == "step 6 evaluation: mlm_loss 5.0"
    with pytest.raises(ValueError, match="train.log_format='fancy'"):
        reporting.Progress(0, 6, "fancy")
