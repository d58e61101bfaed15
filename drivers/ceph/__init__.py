"""Ceph RBD driver (SR type ``rbd``): one SR = one RBD namespace, one VDI = one image."""
