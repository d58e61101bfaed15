"""The admin docs are generated from the drivers' declared options."""
from simulator import docgen


def test_device_config_doc_is_current():
    with open(docgen.TARGET) as f:
        assert f.read() == docgen.render(), 'run: srkit docs --write'


def test_doc_lists_every_declared_key():
    from framework.registry import load
    text = docgen.render()
    for opt in load('local').options:
        assert '| `%s` |' % opt.key in text
