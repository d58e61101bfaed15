"""SR type ``zfsvol``: one ZFS dataset per SR, one zvol per VDI (see docs/zfs.md)."""
