"""What every part of the RBD driver shares: where the SR is and who runs this command.

One ``SRContext`` per driver process is handed to each collaborator (driver.py
composes them); it is the only thing they share besides each other's public
methods. It knows device-config, the SR's pool and namespace, the one lazy
connection to the cluster, and the framework's view of this invocation (log,
per-host state dir, SR master or not, host identity). It knows nothing about
VDIs, intents or leases.
"""

from framework import crash
from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import rbd_module


class SRContext(object):
    """``sr_uuid``, ``config``, ``pool``, ``namespace``, ``log``, ``state_dir``,
    ``is_master``, ``host_id``; ``cluster``/``io`` (connected on first use),
    ``root_io()``, ``grace()`` and ``open_image()``."""

    def __init__(self, sr_uuid, config, context):
        self.sr_uuid = sr_uuid
        self.config = config
        self.log = context.log
        self.state_dir = context.state_dir
        self.is_master = context.is_master
        self._context = context
        self.pool = config.get('pool') or 'rbd'
        self.namespace = L.namespace_of(sr_uuid or '', config)
        self._cluster = None

    @property
    def host_id(self):
        """Who this host is in a write lease (looked up only when asked)."""
        return self._context.host_id

    @property
    def cluster(self):
        if self._cluster is None:
            from drivers.ceph.connection import Cluster, validate_config
            validate_config(self.config)
            self._cluster = Cluster(self.config)
        return self._cluster

    @property
    def io(self):
        """The I/O context of the SR's namespace."""
        return self.cluster.ioctx(self.pool, self.namespace)

    def root_io(self):
        """The I/O context of the pool's default namespace (where namespaces are made)."""
        return self.cluster.ioctx(self.pool, '')

    def grace(self):
        """device-config gc_grace, else the framework's (SRKIT_GC_GRACE for tests)."""
        value = self.config.get('gc_grace')
        return float(value) if value not in (None, '') else crash.grace()

    def open_image(self, name, read_only=False, snapshot=None):
        """An open image of the SR, VDIMissing if there is none. Nothing else: a
        read-write open goes through watchers.Images, which records this process's
        client first."""
        rbd = rbd_module()
        try:
            return rbd.Image(self.io, name, snapshot=snapshot, read_only=read_only)
        except rbd.ImageNotFound:
            raise SRError('VDIMissing', 'no RBD image %s in %s/%s' % (name, self.pool,
                                                                      self.namespace))
