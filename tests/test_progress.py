"""Progress that shows under `dvc repro`: tqdm on a terminal, a plain line every few seconds otherwise."""

import io

from quantlake.progress import PlainProgress, progress_bar, track


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_plain_line_at_most_every_few_seconds_and_one_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(10, "ingest", "symbols", every_s=5.0, stream=out, clock=clock)
    for t in (1.0, 4.99, 5.0, 6.0, 9.9, 10.0, 10.5):
        clock.t = t
        bar.update(1)
    bar.set_postfix_str("SIM:BTCUSDT")
    bar.close()
    # a line at 5.0 (5 s after the start) and at 10.0 (5 s after that), then the final one
    assert out.getvalue().splitlines() == [
        "ingest: 3/10 symbols (30%)",
        "ingest: 6/10 symbols (60%)",
        "ingest: 7/10 symbols (70%) SIM:BTCUSDT",
    ]
    bar.close()  # nothing new to say
    assert len(out.getvalue().splitlines()) == 3


def test_the_kind_of_bar_follows_the_stream():
    assert isinstance(progress_bar(3, "x", "y", stream=io.StringIO()), PlainProgress)
    tty = progress_bar(3, "x", "y", stream=Terminal())
    assert type(tty).__module__.startswith("tqdm")
    tty.close()
    assert progress_bar(3, "x", "y", enabled=False, stream=Terminal()) is None
    assert progress_bar(0, "x", "y", stream=io.StringIO()) is None


def test_track_ticks_after_every_item_even_when_the_body_skips(capsys):
    seen = []
    for item in track(range(4), 4, "features", "symbols", None):
        if item % 2:
            continue
        seen.append(item)
    assert seen == [0, 2]
    assert capsys.readouterr().err.splitlines() == ["features: 4/4 symbols (100%)"]
