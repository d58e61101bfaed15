"""srkit's backend drivers, one package per backend. Import nothing heavy here.

What several drivers share is framework code: framework/files (VDIs as files, loop
and FUSE-file datapaths), framework/sparse.py.
"""
