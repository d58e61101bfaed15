"""srkit's RPM spec, generated from two tables: drivers.tsv (one line per driver) and
tools.tsv (the files of the `srkit` command on a host), plus what each driver needs, which
the runtime's registry says (framework/registry.py NEEDS). srkit.spec.in holds the parts
that do not depend on them (framework, meta package, scriptlets' shape).
"""
import collections
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.dirname(HERE)
SRKIT_LIB = '/usr/lib/srkit'
SM_DIR = '/opt/xensource/sm'
MARKERS = SRKIT_LIB + '/sm-plugins.d'

Driver = collections.namedtuple('Driver', 'type package modules sm requires')
Tool = collections.namedtuple('Tool', 'source dest mode')


def _rows(path, min_fields, max_split):
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split('#', 1)[0].strip()
            if not line:
                continue
            fields = line.split(None, max_split)
            if len(fields) < min_fields:
                raise ValueError('%s:%d: expected at least %d fields: %r'
                                 % (path, lineno, min_fields, raw.rstrip()))
            yield lineno, fields


def runtime_registry():
    """framework.registry of this source tree (never of another checkout on sys.path)."""
    sys.path.insert(0, TREE)
    try:
        from framework import registry
    finally:
        sys.path.remove(TREE)
    mine = os.path.join(os.path.realpath(TREE), 'framework', '')
    if not os.path.realpath(registry.__file__).startswith(mine):
        raise ImportError('framework.registry comes from %s, not from %s'
                          % (registry.__file__, TREE))
    return registry


def read_drivers(path=os.path.join(HERE, 'drivers.tsv'), registry=None):
    """The table's drivers, each with the RPM requirements the registry's NEEDS give it."""
    registry = registry or runtime_registry()
    drivers, seen = [], set()
    for lineno, fields in _rows(path, 4, 4):
        where = '%s:%d' % (path, lineno)
        if len(fields) > 4:
            raise ValueError('%s: a driver is four fields; what it needs is written in '
                             'framework/registry.py (NEEDS), not here' % where)
        sr_type, package, modules, sm = fields
        # xapi derives the SR type from the file name, not from the driver's own info
        if not sm.endswith('SR') or sm[:-2].lower() != sr_type:
            raise ValueError('%s: %s would register SR type %r, not %r'
                             % (where, sm, sm[:-2].lower(), sr_type))
        modules = [m.strip('/') for m in modules.split(',') if m]
        for m in modules:
            if not m.startswith('drivers/') or '..' in m.split('/'):
                raise ValueError('%s: module directory %r is not under drivers/' % (where, m))
        for key in (('type', sr_type), ('package', package)):
            if key in seen:
                raise ValueError('%s: duplicate %s %r' % (where, key[0], key[1]))
            seen.add(key)
        requires = [n[1] for n in registry.needs(sr_type, registry.REQUIRED)]
        drivers.append(Driver(sr_type, package, modules, sm, requires))
    return drivers


def read_tools(path=os.path.join(HERE, 'tools.tsv')):
    tools = []
    for lineno, fields in _rows(path, 3, 2):
        source, dest, mode = fields
        if not dest.startswith('/') or not mode.isdigit():
            raise ValueError('%s:%d: bad destination or mode' % (path, lineno))
        tools.append(Tool(source, dest, mode))
    return tools


def present(tree, drivers, tools, say):
    """The drivers and tool files whose sources are in ``tree``; ``say`` what is skipped."""
    kept_drivers = []
    for d in drivers:
        missing = [p for p in d.modules + ['sm_drivers/' + d.sm]
                   if not os.path.exists(os.path.join(tree, p))]
        if missing:
            say('skipping driver %s (srkit-%s): not in the source tree yet: %s'
                % (d.type, d.package, ', '.join(missing)))
        else:
            kept_drivers.append(d)
    kept_tools = []
    for t in tools:
        if os.path.isfile(os.path.join(tree, t.source)):
            kept_tools.append(t)
        else:
            say('skipping %s for srkit-tools: not in the source tree yet' % t.source)
    return kept_drivers, kept_tools


def shared_modules(drivers):
    """Module directories several drivers use: srkit-framework ships them once."""
    count = collections.Counter(m for d in drivers for m in d.modules)
    return sorted(m for m, n in count.items() if n > 1)


def _copy(module):
    parent = os.path.dirname(module)
    return ('mkdir -p %%{buildroot}%%{srkit_lib}/%s\ncp -pr %s %%{buildroot}%%{srkit_lib}/%s/'
            % (parent, module, parent))


def _owned_dirs(dests):
    """Directories under /usr/lib/srkit that srkit-tools creates and so must own."""
    dirs = set()
    for dest in dests:
        d = os.path.dirname(dest)
        while d.startswith(SRKIT_LIB + '/'):
            dirs.add(d)
            d = os.path.dirname(d)
    return sorted(dirs)


def render(version, release, epoch, drivers, tools, template=None):
    shared = shared_modules(drivers)
    evr = '%{version}-%{release}'
    preambles, scriptlets, files, install = [], [], [], []
    for m in shared:
        install.append(_copy(m))
    for d in drivers:
        own = [m for m in d.modules if m not in shared]
        preambles.append('\n'.join(
            ['%%package %s' % d.package,
             'Summary:        The srkit driver for SR type %s (%s)' % (d.type, d.sm),
             'Requires:       srkit-framework = %s' % evr,
             'Requires(post): srkit-framework = %s' % evr,
             'Requires(postun): srkit-framework'] +
            ['Requires:       %s' % r for r in d.requires] +
            ['', '%%description %s' % d.package,
             'xapi runs %s/%s for SRs of type %s.' % (SM_DIR, d.sm, d.type),
             'Installing or removing this package rewrites the sm-plugins whitelist;',
             'then run xe-toolstack-restart on every host of the pool.', '', '']))
        install.extend(_copy(m) for m in own)
        install.append('install -p -m 0755 sm_drivers/%s %%{buildroot}%%{sm_dir}/%s'
                       % (d.sm, d.sm))
        install.append('echo "srkit-%s: %s/%s" > %%{buildroot}%s/%s'
                       % (d.package, SM_DIR, d.sm, MARKERS, d.type))
        scriptlets.append('\n'.join(
            ['%%post %s' % d.package, '%{hook} || :', '',
             '%%preun %s' % d.package, 'if [ $1 -eq 0 ]; then'] +
            ['    %%drop_pycache %%{srkit_lib}/%s' % m for m in own] +
            ['fi', '', '%%postun %s' % d.package,
             'if [ -x %{hook} ]; then %{hook} || :; fi', '', '']))
        files.append('\n'.join(
            ['%%files %s' % d.package] +
            ['%%{srkit_lib}/%s' % m for m in own] +
            ['%%{sm_dir}/%s' % d.sm, '%s/%s' % (MARKERS, d.type), '', '']))
    for t in tools:
        install.append('install -D -p -m %s %s %%{buildroot}%s' % (t.mode, t.source, t.dest))
    tools_files = ['%%dir %s' % d for d in _owned_dirs(t.dest for t in tools)]
    tools_files += [t.dest for t in tools]
    if template is None:
        with open(os.path.join(HERE, 'srkit.spec.in')) as f:
            template = f.read()
    values = {
        'VERSION': version,
        'RELEASE': release,
        'CHANGELOG_DATE': time.strftime('%a %b %d %Y', time.gmtime(epoch)),
        'META_REQUIRES': '\n'.join('Requires:       srkit-%s = %s' % (d.package, evr)
                                   for d in drivers),
        'DRIVER_PREAMBLES': ''.join(preambles),
        'INSTALL': '\n'.join(install),
        'DRIVER_SCRIPTLETS': ''.join(scriptlets),
        'SHARED_FILES': '\n'.join('%%{srkit_lib}/%s' % m for m in shared),
        'TOOLS_FILES': '\n'.join(tools_files),
        'DRIVER_FILES': ''.join(files),
    }
    for key, value in values.items():
        template = template.replace('@%s@' % key, value)
    if '@' in template.replace('srkit@localhost', ''):
        raise ValueError('unreplaced placeholder in the spec template')
    return template
