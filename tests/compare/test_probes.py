"""Peak-memory probe on the CPU, the GPU scheduler's one-run-per-GPU rule, and the document renderers."""

from __future__ import annotations

import base64
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from segkit.compare import document as doc
from segkit.compare.memory import RSS_METHOD, Probe
from segkit.compare.schedule import Job, gpu_ids, run_on_gpus
from segkit.errors import SegkitError


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak-RSS reset")
def test_cpu_probe_sees_the_memory_a_block_needs() -> None:
    with Probe(torch.device("cpu")) as small:
        np.ones(1000)
    with Probe(torch.device("cpu")) as large:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    assert large.method == RSS_METHOD
    assert 60 <= large.peak_mib <= 90 and small.peak_mib < 10
    assert large.seconds > 0


def test_runs_spread_one_per_gpu_at_a_time(tmp_path: Path) -> None:
    jobs = [Job(f"run{i}", tmp_path / f"run{i}") for i in range(5)]
    for job in jobs:
        job.folder.mkdir()
    script = ("import os, sys, time, pathlib; start = time.time(); gpu = os.environ['CUDA_VISIBLE_DEVICES']; "
              "pathlib.Path(sys.argv[1], 'gpu').write_text(f'{gpu} {start} {time.time()}')")
    events = []
    run_on_gpus(jobs, ["3", "5"], lambda job, gpu: events.append(("start", job.name, gpu)),
                lambda job, code: events.append(("end", job.name, code)),
                command=lambda folder: [sys.executable, "-c", script, str(folder)])
    records = [(job.folder / "gpu").read_text().split() for job in jobs]
    assert {r[0] for r in records} <= {"3", "5"}
    for gpu in ("3", "5"):  # the runs on one GPU never overlap
        spans = sorted((float(r[1]), float(r[2])) for r in records if r[0] == gpu)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert sorted(e[1] for e in events if e[0] == "end") == [j.name for j in jobs]
    assert all(e[2] == 0 for e in events if e[0] == "end")


def test_gpu_requests_on_a_machine_without_enough_gpus() -> None:
    visible = torch.cuda.device_count()
    assert gpu_ids("0") == [] and gpu_ids("1" if visible else "0") == []
    with pytest.raises(SegkitError, match=f"only {visible} GPU"):
        gpu_ids(str(visible + 1))
    with pytest.raises(SegkitError, match="give auto or a number"):
        gpu_ids("many")


def test_html_is_escaped_and_self_contained() -> None:
    png = b"\x89PNG\r\n\x1a\nfake"
    blocks = [doc.Heading("A <b>title</b>", 1), doc.Paragraph("uses `model.upsample` & <script>"),
              doc.Table(["variant", "a|b"], [["x|y", "1"]]), doc.Image("f.png", png, "alt \"q\"", "caption")]
    page = doc.to_html(blocks, "t")
    assert "<script>" not in page and "&lt;script&gt;" in page and "<code>model.upsample</code>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    markdown = doc.to_markdown(blocks)
    assert "| x\\|y | 1 |" in markdown and "![alt \"q\"](figures/f.png)" in markdown
