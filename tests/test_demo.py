"""`srkit demo` (the README's first command) does its whole job."""
import io

from simulator import demo


def test_demo_reads_everything_back_and_cleans_up(tmp_path):
    out = io.StringIO()
    assert demo.run(str(tmp_path), out) == []
    text = out.getvalue()
    assert '4 VDIs back' in text and 'web-test' in text
    assert list((tmp_path / 'storage').iterdir()) == []
