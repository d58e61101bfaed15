"""A `local` driver whose backend binding is imported lazily and is missing."""
from drivers.local.driver import LocalDriver


class MissingLibDriver(LocalDriver):
    def sr_attach(self):
        import srkit_no_such_binding  # noqa: F401  (as an rbd driver imports rados late)
