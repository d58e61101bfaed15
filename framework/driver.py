"""The driver contract: the few backend primitives a driver implements.

A driver subclasses ``Driver`` and implements the required primitives in its
backend's own vocabulary (directory and file, pool and image, dataset and zvol,
bucket and object). It never sees XML-RPC, XenAPI, lock files or the SMAPIv1
command set: ``framework.commands`` implements every command once, on top of
these primitives.

Like nbdkit plugins, a driver declares nothing it cannot do: each optional
primitive it overrides turns on a capability (see ``CAPABILITY_OF``), and the
driver-info reply advertises exactly that. A driver without ``snapshot``
never advertises VDI_SNAPSHOT, so xapi never asks for it.

VDIs are named by their uuid. The framework picks the uuid; the driver must
accept it as the volume's identity (it is also the xapi ``location``).

Metadata that survives xapi: ``meta`` is a flat ``{str: str}`` mapping owned by
the framework (names, description, type, snapshot relations; see
``framework.meta``). The driver stores it *on the backend* next to the volume
(a sidecar file, RBD image metadata, ZFS user properties, an object) and
returns it from ``list``, so ``sr_scan`` on a fresh pool rebuilds xapi's view.

Errors: raise ``framework.errors.SRError(name, detail)``; anything else becomes
a generic fault (1200) with the exception text.
"""

import os

from framework import API_VERSION, API_AGE
from framework.errors import SRError


class Volume(object):
    """What the backend knows about one VDI."""
    __slots__ = ('uuid', 'virtual_size', 'physical_utilisation', 'meta', 'read_only')

    def __init__(self, uuid, virtual_size, physical_utilisation=0, meta=None,
                 read_only=False):
        self.uuid = uuid
        self.virtual_size = int(virtual_size)
        self.physical_utilisation = int(physical_utilisation)
        self.meta = dict(meta or {})
        self.read_only = bool(read_only)

    def __repr__(self):
        return 'Volume(%r, %d, %d, ro=%s)' % (
            self.uuid, self.virtual_size, self.physical_utilisation, self.read_only)


class Context(object):
    """Where this invocation runs: handed to the driver's constructor."""

    def __init__(self, state_dir, log, is_master, host_uuid_lookup=None):
        self.state_dir = state_dir    # per-host, per-SR scratch dir under /run (gone on reboot)
        self.log = log                # log.info(msg), log.error(msg)
        self.is_master = is_master    # device_config SRmaster == 'true'
        self._host_uuid_lookup = host_uuid_lookup
        self._host_uuid = None

    @property
    def host_uuid(self):
        """This host's uuid ('' without a xapi session, e.g. attach_from_config)."""
        if self._host_uuid is None:
            self._host_uuid = self._host_uuid_lookup() if self._host_uuid_lookup else ''
        return self._host_uuid

    @property
    def host_id(self):
        """Who this host is in a single-writer lease: its uuid, or its hostname where
        xapi cannot say (attach_from_config at boot, xapi unreachable)."""
        try:
            host = self.host_uuid
        except Exception:
            host = ''
        return host or os.uname()[1]


class Driver(object):
    # --- identity: driver-info fields --------------------------------------
    name = None                 # driver-info name, e.g. 'Local'
    description = ''
    vendor = 'srkit'
    copyright = 'srkit contributors'
    driver_version = '0.1.0'
    api_version = API_VERSION   # the framework API version this driver was written for

    # --- declared data ---------------------------------------------------------
    options = ()                # framework.options.Option list
    thin_provisioning = False   # advertise THIN_PROVISIONING
    max_vdi_size = 2040 * 1024 ** 3  # bytes; larger -> VDISize (79); above this: LARGE_VDI
    size_granularity = 1        # sizes are rounded up to a multiple of this
    resize_online = False       # resize works while the VDI is attached

    def __init__(self, sr_uuid, config, context):
        self.sr_uuid = sr_uuid
        self.config = config
        self.ctx = context

    # --- required primitives -----------------------------------------------------
    def sr_create(self, physical_size):
        """Make the backend hold a new, empty SR named ``self.sr_uuid``."""
        raise NotImplementedError

    def sr_delete(self):
        """Remove the (empty) SR from the backend."""
        raise NotImplementedError

    def sr_stats(self):
        """Return ``(physical_size, physical_utilisation)`` in bytes."""
        raise NotImplementedError

    def list(self):
        """Return ``{uuid: Volume}`` for every VDI of the SR, with its meta.

        Must raise SRError('SRUnavailable') when the SR itself cannot be seen
        (unmounted, unreachable, deleted): an empty dict means "no VDIs", and
        sr_scan would forget every VDI in xapi.
        """
        raise NotImplementedError

    def create(self, uuid, size, meta):
        """Create an empty (zero-filled) volume of ``size`` bytes; return its Volume."""
        raise NotImplementedError

    def destroy(self, uuid):
        """Remove a volume. Refuse (SRError) rather than lose a dependant."""
        raise NotImplementedError

    def set_meta(self, uuid, meta):
        """Replace the framework metadata stored with a volume."""
        raise NotImplementedError

    def attach(self, uuid, writable):
        """Make the volume available on this host; return a block device path."""
        raise NotImplementedError

    def detach(self, uuid):
        """Undo ``attach`` on this host."""
        raise NotImplementedError

    def device_alive(self, uuid, path):
        """Whether ``path``, returned by an earlier ``attach`` on this host, still
        serves the volume. A repeated vdi_attach returns it only then, else calls
        ``attach`` again. Override where a device node can outlive what serves it
        (a userspace daemon behind /dev/nbdN). Default: the node exists."""
        return os.path.exists(path)

    # --- optional primitives (each one implies a capability) -----------------
    def sr_attach(self):
        """Connect this host to the SR (mount, log in). Default: nothing to do."""

    def sr_detach(self):
        """Disconnect this host from the SR. Default: nothing to do."""

    def get(self, uuid):
        """Return one Volume or None. Override when listing everything is costly."""
        return self.list().get(uuid)

    def collect_garbage(self):
        """Remove what killed commands left on the backend (sr_scan, on the master).

        Must never remove what a command still running (maybe on another host) is
        building: use ``framework.crash.grace()`` and/or an in-progress marker.
        Default: nothing to collect."""

    # def probe(self):             -> SR_PROBE: [{'uuid':…, 'size':…, …}] of SRs found
    # def snapshot(self, uuid, new_uuid, meta):  -> VDI_SNAPSHOT: read-only point-in-time volume
    # def clone(self, uuid, new_uuid, meta):     -> VDI_CLONE: writable copy-on-write volume
    # def resize(self, uuid, size):  -> VDI_RESIZE: grow; return the new size
    # def revert(self, uuid, snapshot_uuid):  -> VDI_REVERT: roll uuid back to a snapshot
    # def activate(self, uuid, writable):     -> VDI_ACTIVATE/VDI_DEACTIVATE: single-writer
    # def deactivate(self, uuid):                guard across hosts (locks, leases)
    # def extents(self, uuid):            -> sparse export: [(offset, length)] of data
    # def changed_extents(self, uuid, base_uuid): -> incremental export since a snapshot
    #     (uuid: the VDI or a later snapshot of it; base_uuid may be data-destroyed)
    # def data_destroy(self, uuid):  with changed_extents -> VDI_CONFIG_CBT: free what
    #     the backend can of snapshot uuid, keeping what changed_extents needs of it;
    #     idempotent (framework/cbt.py marks the VDI first, then calls it)


# Optional primitive (or all of a tuple of them) -> xapi capabilities it implies.
CAPABILITY_OF = (
    ('probe', ('SR_PROBE',)),
    ('snapshot', ('VDI_SNAPSHOT',)),
    ('clone', ('VDI_CLONE',)),
    ('resize', ('VDI_RESIZE',)),
    ('revert', ('VDI_REVERT',)),
    ('activate', ('VDI_ACTIVATE', 'VDI_DEACTIVATE')),
    (('changed_extents', 'data_destroy'), ('VDI_CONFIG_CBT',)),
)

# What every driver gets from the framework itself.
BASE_CAPABILITIES = (
    'SR_CREATE', 'SR_DELETE', 'SR_ATTACH', 'SR_DETACH', 'SR_SCAN', 'SR_UPDATE',
    'VDI_CREATE', 'VDI_DELETE', 'VDI_ATTACH', 'VDI_DETACH', 'VDI_UPDATE',
    'VDI_INTRODUCE', 'VDI_GENERATE_CONFIG',
)

REQUIRED = ('sr_create', 'sr_delete', 'sr_stats', 'list', 'create', 'destroy',
            'set_meta', 'attach', 'detach')


def implements(cls, primitive):
    return callable(getattr(cls, primitive, None))


def capabilities(cls):
    caps = list(BASE_CAPABILITIES)
    for primitive, names in CAPABILITY_OF:
        needed = primitive if isinstance(primitive, tuple) else (primitive,)
        if all(implements(cls, p) for p in needed):
            caps.extend(names)
    if implements(cls, 'resize') and cls.resize_online:
        caps.append('VDI_RESIZE_ONLINE')
    if cls.thin_provisioning:
        caps.append('THIN_PROVISIONING')
    if cls.max_vdi_size > 2040 * 1024 ** 3:
        caps.append('LARGE_VDI')
    return caps


def check(cls):
    """Refuse a driver the framework cannot run (Proxmox-style version + age).

    A driver written for framework API N keeps loading while
    ``API_VERSION - API_AGE <= N <= API_VERSION``.
    """
    version = getattr(cls, 'api_version', None)
    if not isinstance(version, int) or not (API_VERSION - API_AGE <= version <= API_VERSION):
        raise SRError('SRUnknownType', 'driver %s targets framework API %r; this '
                      'framework supports %d..%d' % (cls.__name__, version,
                                                     API_VERSION - API_AGE, API_VERSION))
    missing = [p for p in REQUIRED if getattr(cls, p) is getattr(Driver, p)]
    if missing:
        raise SRError('SRUnknownType', 'driver %s does not implement %s'
                      % (cls.__name__, ', '.join(missing)))
    if not cls.name:
        raise SRError('SRUnknownType', 'driver %s has no name' % cls.__name__)
