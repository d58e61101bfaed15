"""SR error names and their XE_SR_ERRORCODES numbers: the one table of fault codes.

Drivers and the command layer raise ``SRError('VDIMissing', 'detail')``; only the
wire layer turns it into an XML-RPC fault. Numbers and descriptions follow sm's
XE_SR_ERRORCODES.xml so that users see the same SR_BACKEND_FAILURE_<n> they know.
Codes 16, 24, 38, 39 and 144 have a special meaning to xapi (they are mapped to
SR_DEVICE_IN_USE, VDI_IN_USE, not-implemented, SR_NOT_EMPTY and VDI_MISSING);
use them only with that meaning.
"""

ERRORS = {
    # name: (code, description)
    'InvalidArg': (1, 'Invalid argument'),
    'SRInUse': (16, 'The SR device is currently in use'),
    'VDIInUse': (24, 'The VDI is currently in use'),
    'LockErr': (37, 'The lock/unlock request failed'),
    'Unimplemented': (38, 'The requested method is not supported/implemented'),
    'SRNotEmpty': (39, 'The SR is not empty'),
    'SRScan': (40, 'The SR scan failed'),
    'SRExists': (42, 'The SR already exists'),
    'VDIExists': (43, 'The VDI already exists'),
    'SRNoSpace': (44, 'There is insufficient space'),
    'VDIUnavailable': (46, 'The VDI is not available'),
    'SRUnavailable': (47, 'The SR is not available'),
    'SRUnknownType': (48, 'Unknown repository type'),
    'VDIType': (66, 'Invalid VDI type'),
    'VDICreate': (78, 'VDI Creation failed'),
    'VDISize': (79, 'VDI Invalid size'),
    'VDIDelete': (80, 'Failed to mark VDI hidden'),
    'VDIClone': (81, 'Failed to clone VDI'),
    'VDISnapshot': (82, 'Failed to snapshot VDI'),
    'SnapshotChainTooLong': (109, 'The snapshot chain is too long'),
    'VDIResize': (110, 'VDI resize failed'),
    'ConfigParamsMissing': (115, 'Not all required parameters specified.'),
    'BadRequest': (143, 'Failed to parse the request'),
    'VDIMissing': (144, 'VDI could not be found'),
    'APISession': (150, 'Failed to initialize XMLRPC connection'),
    'APIFailure': (153, 'Failed to make XAPI call'),
    'EIO': (200, 'General IO error'),
    'SMGeneral': (202, 'General backend error'),
    'IllegalXMLChar': (447, 'Illegal XML character.'),
    'CBTActivateFailed': (457, 'Unable to activate changed block tracking.'),
    'CBTDeactivateFailed': (458, 'Unable to deactivate changed block tracking.'),
    'CBTMetadataInconsistent': (459, 'CBT metadata inconsistent'),
    'CBTChangedBlocksError': (460, 'Failed to calculate changed blocks for given VDIs.'),
    'GenericException': (1200, 'SM has thrown a generic python exception'),
}


class SRError(Exception):
    """An error with an SR error name; becomes an XML-RPC fault on the wire."""

    def __init__(self, name, detail=''):
        code, description = ERRORS[name]
        self.name = name
        self.code = code
        self.detail = detail
        message = description
        if detail:
            message = '%s [opterr=%s]' % (description, detail)
        Exception.__init__(self, message)

    @property
    def message(self):
        return self.args[0]


def primitive_faults(translate, after=None):
    """Build a driver's `mapped(fault)` decorator for its primitives: an SRError passes
    through, any other exception goes to ``translate(driver, primitive_name, args, exc,
    fault)``, which returns the SRError to raise instead, or None to let it propagate
    (a bug stays a traceback in the log, not a made-up backend fault). ``after()`` runs
    once the primitive is over, whatever happened."""
    def mapped(fault='SMGeneral'):
        def wrap(fn):
            def primitive(self, *args, **kwargs):
                try:
                    return fn(self, *args, **kwargs)
                except SRError:
                    raise
                except Exception as e:
                    err = translate(self, fn.__name__, args, e, fault)
                    if err is None:
                        raise
                    raise err
                finally:
                    if after is not None:
                        after()
            primitive.__name__ = fn.__name__
            primitive.__doc__ = fn.__doc__
            return primitive
        return wrap
    return mapped
