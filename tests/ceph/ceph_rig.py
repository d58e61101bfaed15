"""The rbd tests' own helpers (conftest.py holds their fixtures; tests/hostpath uses
them too): an SR of the simulated pool with librbd handles on its namespace, to check
what Ceph itself reports after each driver call."""


class SR(object):
    """An rbd SR of the simulated pool plus Ceph-side handles on its namespace."""

    def __init__(self, pool, ref, cluster, device_config):
        self.pool, self.ref, self.cluster = pool, ref, cluster
        self.device_config = device_config
        self.uuid = pool.sr_record(ref)["uuid"]
        self.pool_name = device_config.get("pool", "rbd")
        self.namespace = device_config.get("namespace") or self.uuid
        self.io = cluster.open_ioctx(self.pool_name)
        self.io.set_namespace(self.namespace)

    # --- Ceph's view -------------------------------------------------------------
    def images(self):
        import rbd
        return sorted(rbd.RBD().list(self.io))

    def image(self, name, **kw):
        import rbd
        return rbd.Image(self.io, name, **kw)

    def snaps(self, name):
        with self.image(name, read_only=True) as img:
            return sorted(s["name"] for s in img.list_snaps())

    def metadata(self, name):
        with self.image(name, read_only=True) as img:
            return dict(img.metadata_list())

    def parent(self, name):
        import rbd
        with self.image(name, read_only=True) as img:
            try:
                spec = img.get_parent_image_spec()
            except rbd.ImageNotFound:
                return None
            return spec["image_name"], spec["snap_name"]

    def read(self, name, offset, length, snapshot=None):
        with self.image(name, read_only=True, snapshot=snapshot) as img:
            return img.read(offset, length)

    def write(self, name, offset, data):
        with self.image(name) as img:
            img.write(data, offset)
            img.flush()

    def index(self):
        import rados
        with rados.ReadOpCtx() as op:
            it, _ = self.io.get_omap_vals(op, "", "", 100000)
            self.io.operate_read_op(op, "srkit.sr")
            return {k: (v or b'').decode() for k, v in it}

    # --- xapi's view -------------------------------------------------------------
    def vdi(self, ref):
        return self.pool.vdi_record(ref)

    def uuid_of(self, ref):
        return self.pool.vdi_record(ref)["uuid"]

    def purge(self):
        """Remove whatever a test left in the namespace (admin, Ceph side)."""
        import rbd
        from namespace_cleanup import empty_namespace
        empty_namespace(self.io, threads=1)
        if self.namespace == self.uuid:
            root = self.cluster.open_ioctx(self.pool_name)
            try:
                rbd.RBD().namespace_remove(root, self.namespace)
            except rbd.Error:
                pass
            root.close()
        self.io.close()
