"""Gluster driver (SR type ``gluster``): one SR = a directory on a Gluster volume mounted
with FUSE on every host, one VDI = one sparse raw file (shared code: framework/files)."""
