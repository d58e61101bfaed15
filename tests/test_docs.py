"""The admin docs are generated from the drivers' declared options, or checked against what
the runtime declares."""
import itertools
import os
import re

from simulator import docgen


def test_device_config_doc_is_current():
    with open(docgen.TARGET) as f:
        assert f.read() == docgen.render(), 'run: srkit docs --write'


def test_doc_lists_every_declared_key():
    from framework.registry import load
    text = docgen.render()
    for opt in load('local').options:
        assert '| `%s` |' % opt.key in text


# --- docs/install.md: what each driver needs, as framework/registry.py NEEDS says -------------

def needs_cell(lines):
    """How docs/install.md words NEEDS lines: the packages, grouped by what they are for."""
    groups = [(why, list(group)) for why, group in itertools.groupby(lines, key=lambda n: n[4])]
    return '; '.join('%s for %s' % (', '.join('`%s`' % n[1] for n in group), why)
                     for why, group in groups)


def install_doc_rows():
    """{sr type: cells} of the table under install.md's "What each driver needs"."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'docs', 'install.md')
    with open(path) as f:
        section = f.read().split('\n## What each driver needs', 1)[1].split('\n## ', 1)[0]
    rows = {}
    table = section.split('\n|', 1)[1].split('\n\n', 1)[0]   # the section's first table only
    for line in ('|' + table).splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        named = re.match(r'^`([a-z0-9]+)`$', cells[0]) if line.startswith('|') else None
        if named:
            rows[named.group(1)] = cells
    return rows


def test_install_doc_lists_what_each_driver_needs():
    from framework import registry
    rows = install_doc_rows()
    assert sorted(rows) == sorted(registry.DRIVERS)
    for sr_type, cells in sorted(rows.items()):
        wanted = [needs_cell(registry.needs(sr_type, registry.REQUIRED)),
                  needs_cell(registry.needs(sr_type, registry.OPTIONAL))]
        assert cells[1:3] == wanted, 'docs/install.md, row `%s`: | %s |' % (
            sr_type, ' | '.join(wanted))


def test_needs_cell_groups_packages_by_purpose():
    lines = [('x', 'a', 'required', 'a', 'attach'), ('x', 'b', 'required', 'b', 'attach'),
             ('x', 'c', 'required', 'c', 'scan')]
    assert needs_cell(lines) == '`a`, `b` for attach; `c` for scan'
    assert needs_cell([]) == ''
