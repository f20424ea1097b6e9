"""Progress output: a live bar on a terminal, a few plain lines in a log."""
import io

from robots_ts.progress import Progress


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_log_gets_a_few_lines_with_the_rate():
    out, clock = io.StringIO(), FakeClock()
    bar = Progress(100_000, unit="step", desc="teacher Reach", stream=out, clock=clock)
    for _ in range(1000):      # 1,000 updates of 100 steps, 0.1 s apart: 100 s at 1,000 steps/s
        clock.t += 0.1
        bar.update(100)
        bar.set_postfix(success="0.50")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 9 <= len(lines) <= 12                      # one per 10% (10 s apart here), none in between
    assert all("steps/s" in line for line in lines)
    assert lines[-1].startswith("teacher Reach: 100,000/100,000 steps (100%), 1,000 steps/s")
    assert "success=0.50" in lines[-1]


def test_log_line_at_least_every_interval_when_progress_is_slow():
    out, clock = io.StringIO(), FakeClock()
    bar = Progress(1_000_000, stream=out, clock=clock, every_s=30.0)
    for _ in range(120):       # 2 minutes, far from 10% of the total
        clock.t += 1.0
        bar.update(10)
    assert len(out.getvalue().splitlines()) == 4
    bar.close()
    assert len(out.getvalue().splitlines()) == 4      # nothing new since the last line


def test_terminal_gets_the_tqdm_bar_and_disable_shows_nothing(capsys):
    out = io.StringIO()
    bar = Progress(10, stream=out, live=True)
    for _ in range(10):
        bar.update(1)
    bar.close()
    assert "10/10" in out.getvalue() and "\r" in out.getvalue()
    quiet = io.StringIO()
    bar = Progress(10, stream=quiet, disable=True)
    bar.update(10)
    bar.write("eval success 1.00")
    bar.close()
    assert quiet.getvalue() == "" and capsys.readouterr().out == "eval success 1.00\n"
