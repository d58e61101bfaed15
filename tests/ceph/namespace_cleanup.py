"""Emptying an RBD namespace from the admin side: what tests and the benchmark
leave behind (images with protected snapshots, index and lease objects)."""
from concurrent.futures import ThreadPoolExecutor


def purge_image(io, name):
    import rbd
    try:
        with rbd.Image(io, name) as img:
            for s in list(img.list_snaps()):
                try:
                    if img.is_protected_snap(s["name"]):
                        img.unprotect_snap(s["name"])
                    img.remove_snap(s["name"])
                except rbd.Error:
                    pass
        rbd.RBD().remove(io, name)
    except rbd.Error:
        pass


def empty_namespace(io, rounds=4, threads=8):
    """Remove every image (children first, by retrying) and every object."""
    import rbd
    for _ in range(rounds):
        names = list(rbd.RBD().list(io))
        if not names:
            break
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda name: purge_image(io, name), names))
    for obj in list(io.list_objects()):
        try:
            io.remove_object(obj.key)
        except Exception:
            pass
