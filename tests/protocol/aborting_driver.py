"""`local` drivers that die inside a primitive the way a C library kills them."""
import os

from drivers.local.driver import LocalDriver


class AbortingDriver(LocalDriver):
    def sr_attach(self):
        os.abort()


class AbortingAfterCephCaptureDriver(LocalDriver):
    def sr_attach(self):
        from drivers.ceph.connection import capture_stderr
        capture_stderr({})  # fd 2 now points at the private capture file
        os.abort()
