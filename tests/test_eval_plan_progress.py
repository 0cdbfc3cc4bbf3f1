"""The eval plan's pass counts and estimates, and the progress display (rate, ETA, pipe lines)."""

from __future__ import annotations

import io

from rich.console import Console

import repro.cli.progress as progress_module
from repro.cli.progress import AverageEtaColumn, EvalProgress, format_rate, line_interval
from repro.inference.transforms import resize_output_size
from repro.inference.geometry import scaled_size, slide_windows
from repro.manifest import load_manifest
from repro.planning.plan import GFLOPS_512, DeviceInfo, format_duration, passes_per_image


def _row(dataset: str, protocol: str):
    entry = next(e for e in load_manifest().entries if e.dataset == dataset and protocol in e.protocols)
    return entry, entry.protocols[protocol]


def test_whole_image_passes_are_scales_times_flips():
    _, protocol = _row("ade20k", "ms+flip")
    count = passes_per_image(protocol, (512, 683))
    assert count.passes == len(protocol.scales) * 2 and count.exact
    height, width = resize_output_size(512, 683, protocol.resize.output_size, protocol.resize.keep_ratio)
    assert count.pixels == sum(2 * h * w for h, w in (scaled_size(height, width, s) for s in protocol.scales))


def test_slide_passes_count_the_window_grid_per_scale():
    _, protocol = _row("cityscapes", "ms+flip")
    count = passes_per_image(protocol, (1024, 2048), fixed_size=True)
    windows = [slide_windows(*scaled_size(1024, 2048, s), protocol.crop_size, protocol.stride) for s in protocol.scales]
    assert count.passes == 2 * sum(len(w) for w in windows) and count.exact
    _, context = _row("pascalcontext59", "ms+flip")
    assert not passes_per_image(context, (375, 500)).exact  # depends on the image size: shown with "~"


def test_every_architecture_has_a_cost_and_estimates_scale_with_device():
    configs = {e.upstream_config for e in load_manifest().entries}
    assert configs <= set(GFLOPS_512)
    cpu, gpu = DeviceInfo("cpu", "cpu", 2), DeviceInfo("cuda", "NVIDIA H100 80GB HBM3")
    assert gpu.flops_per_second() > 100 * cpu.flops_per_second()
    assert format_duration(30) == "~30 s" and format_duration(3 * 3600) == "~3.0 h" and format_duration(None) == "?"


def test_rate_turns_into_seconds_per_image_below_one_per_second():
    assert format_rate(10, 4.0) == "2.50 img/s"
    assert format_rate(2, 9.0) == "4.5 s/img"
    assert format_rate(0, 5.0) == ""


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_pipe_progress_prints_a_few_lines_with_an_average_eta(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    buffer = io.StringIO()
    view = EvalProgress("run", True, Console(file=buffer, force_terminal=False, width=80))
    with view:
        view.phase("evaluating")
        view(0, 2000)
        for done in range(1, 2001):
            clock.now += 0.5  # 2 img/s for 1000 s
            view(done, 2000)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "run: evaluating" and lines[-1] == "run: 2000/2000 images, 2.00 img/s"
    assert 5 <= len(lines) <= 40  # not one per image
    assert "run: 60/2000 images, 2.00 img/s, eta 16:10" in lines  # (2000 - 60) x 0.5 s
    assert line_interval(10) == 30 and line_interval(10000) == 300


def test_slow_images_show_seconds_per_image_and_an_eta(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    buffer = io.StringIO()
    view = EvalProgress("cpu run", True, Console(file=buffer, force_terminal=False, width=80))
    view(0, 10)
    clock.now += 45  # one image longer than rich's 30 s speed window
    view(1, 10)
    assert buffer.getvalue().splitlines()[-1] == "cpu run: 1/10 images, 45.0 s/img, eta 6:45"


def test_terminal_eta_column_counts_down_from_the_average(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)

    class Task:
        total, completed = 10, 4
        fields = {"per_image": 60.0, "updated": clock.now}

    column = AverageEtaColumn()
    assert column.render(Task()).plain == "eta 6:00"
    clock.now += 20
    assert column.render(Task()).plain == "eta 5:40"
    Task.fields = {}
    assert column.render(Task()).plain == "eta -"


def test_phases_in_a_pipe_are_one_line_when_evaluating_starts(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    buffer = io.StringIO()
    view = EvalProgress("x", True, Console(file=buffer, force_terminal=False))
    view.phase("building model")
    clock.now += 2.0
    view.phase("loading checkpoint")
    assert buffer.getvalue() == ""  # a failure here prints only its error line
    clock.now += 0.5
    view.phase("evaluating")
    assert buffer.getvalue() == "x: building model 2.0 s, loading checkpoint 0.5 s; evaluating\n"


def test_a_long_image_prints_its_passes_in_a_pipe_at_the_line_interval(monkeypatch):
    """The heartbeat inside an image: nothing until the usual interval passed without a line,
    then "pass k of n" with the time spent on this image; never on a terminal."""
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    buffer = io.StringIO()
    view = EvalProgress("run", True, Console(file=buffer, force_terminal=False, width=80))
    view.passes(1, 52)  # before the first image is announced: nothing to anchor the line to
    view.phase("evaluating")
    view(0, 10)
    clock.now += 29
    view.passes(5, 52)
    assert buffer.getvalue().splitlines()[-1] == "run: 0/10 images"  # under 30 s: no line yet
    clock.now += 2
    view.passes(6, 52)
    clock.now += 10
    view.passes(7, 52)  # 10 s after the last line: quiet again
    clock.now += 366 - 41
    view(1, 10)
    clock.now += 39
    view.passes(2, 52)  # the interval grows with the run: a tenth of 405 s
    clock.now += 2
    view.passes(3, 52)
    lines = buffer.getvalue().splitlines()
    assert lines[2:] == ["run: image 1/10, pass 6 of 52 (0:31 on this image)", "run: 1/10 images, 366.0 s/img, eta 54:54",
                         "run: image 2/10, pass 3 of 52 (0:41 on this image)"]
    terminal = io.StringIO()
    bar = EvalProgress("run", True, Console(file=terminal, force_terminal=True, width=80))
    with bar:
        bar(0, 10)
        clock.now += 400
        bar.passes(3, 52)
    assert "pass" not in terminal.getvalue()
    quiet = EvalProgress("run", False, Console(file=io.StringIO(), force_terminal=False))
    quiet(0, 10)
    clock.now += 400
    quiet.passes(3, 52)
    assert quiet.console.file.getvalue() == ""
